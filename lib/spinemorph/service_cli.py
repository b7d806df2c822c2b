"""``spinemorph screen`` / ``labels`` / ``web``: the commands that work around a server and its studies.

Part of the command line (``spinemorph.cli`` adds these sub-commands), so it prints; each handler imports what it
runs lazily.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_parsers"]


def _screen(args: argparse.Namespace) -> None:
    import torch

    from spinemorph.screen import grades_table, screen

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    done = screen(args.source, args.out, args.model, device, detector=not args.no_detector,
                  dicom=args.dicom or bool(args.store), store=args.store, runtime=args.runtime)
    out = Path(args.out)
    with open(out / "verdicts.csv", newline="") as f:
        verdicts = list(csv.DictReader(f))
    rate = len(done.films) / done.seconds * 60 if done.films else 0.0
    print(f"Screened {len(done.films)} films in {done.seconds:.1f} s ({rate:.1f} films a minute on {device}); "
          f"{len(done.resumed)} finished by an earlier run, {len(done.skipped)} files skipped, "
          f"{len(done.failed)} failed.")
    print(f"{sum(v['fracture'] == 'True' for v in verdicts)} of {len(verdicts)} patients with a vertebra graded "
          f">= 1; vertebrae by grade 0-3: {grades_table(out).tolist()}.")
    print(f"Wrote {out / 'cohort.csv'}, {out / 'verdicts.csv'}, {out / 'reports'}/*.png and {out / 'summary.json'}")


def _labels(args: argparse.Namespace) -> None:
    from spinemorph.store import LabelVersions

    versions = LabelVersions(args.studies)
    current = Path(args.studies) / "labels" / args.tag / f"{args.image}.nii.gz"
    if args.restore is None:
        kept = versions.list(args.image, args.tag)
        print(f"{args.tag} label of {args.image}: {'present' if current.exists() else 'absent'}; "
              f"{len(kept)} kept version(s), oldest first:")
        for path in kept:
            print(f"  {path.name.split('.nii')[0]}  {path.stat().st_size} bytes")
        return
    restored = versions.restore(current, args.image, args.tag, args.restore or None)
    print(f"Restored {restored.name} as {current} (the label it replaced is kept as a version). A running server "
          "reads the file at its next infer, score or training.")


def _web(args: argparse.Namespace) -> None:
    """Serve the browser client (web/spinemorph_web) from its own venv, which holds trame-slicer; never returns."""
    repo = Path(__file__).resolve().parents[2]
    python = Path(os.environ.get("SPINEMORPH_WEB_PYTHON") or repo / ".venv-web" / "bin" / "python")
    if not python.is_file():
        raise FileNotFoundError(f"the browser client needs its own venv, {python}, with trame-slicer: run "
                                "`make web-venv` in the repository (or set SPINEMORPH_WEB_PYTHON)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo / "web"), os.environ.get("PYTHONPATH")]))}
    cmd = [str(python), "-m", "spinemorph_web", "--server", args.server, "--host", args.host, "--port", str(args.port)]
    cmd += ["--workdir", args.workdir] if args.workdir else []
    cmd += ["--connect"] if args.connect else []
    os.execve(str(python), cmd, env)


def add_parsers(sub, positive_int: Callable[[str], int]) -> None:
    """Add ``screen``, ``labels`` and ``web`` to the ``spinemorph`` sub-command parsers."""
    scr = sub.add_parser("screen", help="screen every lateral spine film in a folder or on a DICOMweb server: "
                                        "cohort CSV, per-patient verdicts and report pages (resumable)")
    scr.add_argument("source", help="a folder (searched recursively) or a DICOMweb URL (http://host/dicom-web)")
    scr.add_argument("--out", required=True, help="output folder; run again with the same one to resume")
    scr.add_argument("--model", default=str(Path(__file__).resolve().parents[2] / "sample-apps" / "spinemorph_levels"),
                     help="a bundle folder or model.pt (default: the shipped model)")
    scr.add_argument("--device", default="auto", help="cpu, cuda, or auto (CUDA when present)")
    scr.add_argument("--runtime", choices=("torch", "openvino"), default="torch",
                     help="where the networks run on a CPU: torch, or openvino (sooner: the README's Speed)")
    scr.add_argument("--no-detector", action="store_true", help="skip the fracture detector's opinion")
    scr.add_argument("--dicom", action="store_true", help="also write a DICOM SEG and SR for each DICOM film")
    scr.add_argument("--store", metavar="URL", help="store each film's SEG and SR to this DICOMweb server (STOW-RS)")
    scr.set_defaults(run=_screen)

    lab = sub.add_parser("labels", help="list the kept versions of an image's label in a studies folder, or restore "
                                        "one (every label save keeps the label it replaces)")
    lab.add_argument("studies", help="the studies folder the server serves")
    lab.add_argument("--image", required=True, help="image id")
    lab.add_argument("--tag", default="final", help="label tag (default final)")
    lab.add_argument("--restore", nargs="?", const="", metavar="STAMP",
                     help="restore the newest kept version, or the one whose stamp starts with STAMP")
    lab.set_defaults(run=_labels)

    web = sub.add_parser("web", help="annotate, measure and submit in a browser: serves the page (3D Slicer's "
                                     "components through trame-slicer) for a SpineMorph server")
    web.add_argument("--server", default="http://127.0.0.1:8000", help="the SpineMorph server's address")
    web.add_argument("--host", default="127.0.0.1", help="address the page listens on (0.0.0.0: every interface)")
    web.add_argument("--port", type=positive_int, default=8080, help="port the page listens on")
    web.add_argument("--workdir", help="folder for downloaded images, labels and exports (default: a temporary one)")
    web.add_argument("--connect", action="store_true", help="connect to --server when the page starts")
    web.set_defaults(run=_web)
