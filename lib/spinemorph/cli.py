"""The ``spinemorph`` command: one sub-command per pipeline stage, each importing only what it needs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _simulate(args: argparse.Namespace) -> None:
    from spinemorph.data.dataset import simulate_studies
    from spinemorph.data.deformity import parse_fracture
    from spinemorph.data.randomise import Randomisation
    from spinemorph.data.simulate import SimConfig

    fractures = tuple(parse_fracture(f) for f in args.fracture or ())
    config = SimConfig(fov=args.fov, size=int(args.size) if args.size.isdigit() else args.size,
                       projection=args.projection, fracture_rate=args.fracture_rate, fractures=fractures,
                       irregularity=args.irregularity, label_sacrum=args.label_sacrum)
    randomisation = None if args.randomise is None else Randomisation(strength=args.randomise)
    paths = simulate_studies(args.n, args.seed, args.out, config, args.format, args.preview,
                             labelled_fraction=args.labelled_fraction, randomisation=randomisation)
    print(f"Wrote {len(paths)} radiographs, labels and truth to {args.out}")


def _drr(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from spinemorph.data.drr import DrrConfig, render_drrs
    from spinemorph.data.xray import Exposure

    exposure = None if args.kvp is None else Exposure(kvp=args.kvp)
    given = {"rotations": args.rotations and tuple(args.rotations), "tilts": args.tilts and tuple(args.tilts),
             "spacing_mm": args.spacing, "sdd_mm": args.sdd, "source": args.source, "seed": args.seed,
             "exposure": exposure}
    config = DrrConfig(**{k: v for k, v in given.items() if v is not None})  # unset flags keep DrrConfig's defaults
    if args.projection == "parallel":
        config = replace(config, sdd_mm=None)
    if args.random:
        from spinemorph.data.ct_cases import CaseConfig, render_random_drrs
        from spinemorph.data.ct_fracture import parse_lesion
        from spinemorph.data.randomise import Randomisation

        case = CaseConfig(drr=config, fracture_rate=args.fracture_rate, endplate_rate=args.endplate_rate,
                          lesions=tuple(parse_lesion(f) for f in args.fracture or ()), exposure=exposure)
        randomisation = None if args.randomise is None else Randomisation(strength=args.randomise)
        paths = render_random_drrs(args.ct, args.vertebrae, args.out, args.random, case, config.seed, args.labels,
                                   args.format, args.preview, randomisation=randomisation)
        print(f"Wrote {len(paths)} random DRRs, body labels and truth to {args.out}")
        return
    paths = render_drrs(args.ct, args.vertebrae, args.out, config, args.labels, args.format, args.preview)
    print(f"Wrote {len(paths)} DRRs, body labels and truth to {args.out}")


def _measure(args: argparse.Namespace) -> None:
    from spinemorph.io import image_id, read_labelmap, read_radiograph
    from spinemorph.measure import exposed_field, measure
    from spinemorph.measure.report import write_outputs

    labels, label_file = read_labelmap(args.labelmap)
    image = read_radiograph(args.image) if args.image else None
    if image is not None and image.shape != labels.shape:
        raise ValueError(f"The image is {image.shape[0]}×{image.shape[1]} but the labelmap is "
                         f"{labels.shape[0]}×{labels.shape[1]}: they must share one pixel grid.")
    spacing, facing, source = args.spacing, args.facing, "argument"
    for geometry, origin in ((image, "image"), (label_file, "labelmap file")):
        if geometry is None:
            continue
        spacing = spacing or geometry.spacing_mm
        if facing is None and geometry.facing:
            facing, source = geometry.facing, ("PatientOrientation" if geometry.meta.get("format") == "dicom"
                                               else origin)
    result = measure(labels, spacing, facing, args.anchor, facing_source=source,
                     field=None if image is None else exposed_field(image.pixels))
    paths = write_outputs(result, args.out, image_id(args.labelmap), labels,
                          None if image is None else image.pixels)
    print(result.table())
    print("Wrote " + ", ".join(str(p) for p in paths.values()))


def _train(args: argparse.Namespace) -> None:
    from spinemorph.training import TrainConfig, find_cases, train

    args.loss = args.loss or ("dice" if args.head == "binary" else "dicece")
    kwargs = {"features": tuple(args.features), "dropout": args.dropout}
    config = TrainConfig(out=args.out, network=args.network, head=args.head, kwargs=kwargs, loss=args.loss,
                         size=args.size, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                         val_fraction=args.val_fraction, seed=args.seed, workers=args.workers, resume=args.resume,
                         init=args.init, max_steps=args.max_steps, time_budget_s=args.minutes * 60.0)
    summary = train(config, find_cases(*args.studies))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary, indent=1))


def _evaluate(args: argparse.Namespace) -> None:
    from spinemorph.evaluation.run import evaluate
    from spinemorph.inference import load_model
    from spinemorph.training import find_cases, split_cases

    net, spec = load_model(args.model)
    cases = find_cases(*args.studies)
    if args.split == "val":
        cases = split_cases(cases, args.val_fraction, args.seed)[1]
    summary = evaluate(net, spec, cases).summary()
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


def _segment(args: argparse.Namespace) -> None:
    import time

    import torch

    from spinemorph.inference.analyse import analyse, load_networks
    from spinemorph.inference.identity import weights_identity
    from spinemorph.io import image_id, read_radiograph, write_labelmap
    from spinemorph.measure.report import write_outputs

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    image = read_radiograph(args.image)
    read = time.perf_counter()
    heights = "landmarks" if args.landmarks else args.heights
    n = load_networks(args.model, args.device, not args.stage1_only, heights, not args.no_detector, args.runtime)
    loaded = time.perf_counter()
    analysis = analyse(image, n.net, n.spec, args.device, n.facing, refiner=n.refiner, detector=n.detector,
                       landmarks=n.landmarks, heights=heights)
    result = analysis.morphometry
    measured = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = image_id(args.image)
    write_labelmap(out / f"{stem}.labels.nii.gz", analysis.labels, image)
    model = weights_identity(args.model)
    extra = {"model": model, "fracture_calls": analysis.fracture_calls} if analysis.fracture_calls is not None else \
        {"model": model}
    write_outputs(result, out, stem, analysis.labels, image.pixels, extra=extra)
    dicom = {}
    if args.output == "dicom":
        if image.meta.get("format") != "dicom":
            raise ValueError(f"--output dicom needs a DICOM radiograph to refer to; {args.image} is "
                             f"{image.meta.get('format', 'not DICOM')}.")
        from spinemorph.io.dicom_results import write_dicom_results

        dicom = write_dicom_results(out, stem, analysis.labels, result, args.image)
    done = time.perf_counter()
    steps = ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in analysis.timings.items())
    print(result.table())
    print(f"{image.shape[0]}×{image.shape[1]} px: image read {read - start:.2f} s, models load {loaded - read:.2f} s, "
          f"segment + measure {measured - loaded:.2f} s ({steps}), "
          f"write {done - measured:.2f} s; total {done - start:.2f} s on {args.device}"
          f"{f' ({args.runtime})' if args.device == 'cpu' else ''}")
    print(f"Model {model['path']} version {model['version']}, weights SHA-256 {model['sha256']}")
    print(f"Wrote {out / (stem + '.labels.nii.gz')} (the image's geometry) and {stem}.morphometry.json/.csv/.png")
    if dicom:
        print(f"Wrote {' and '.join(p.name for p in dicom.values())} (DICOM SEG and TID 1500 SR of the source)")


def _bundle(args: argparse.Namespace) -> None:
    from spinemorph.inference.bundle import write_bundle

    readme = Path(args.readme).read_text() if args.readme else f"# {Path(args.out).name}\n\n{args.description}\n"
    companions = {name: path for name, path in (("facing.pt", args.facing), ("refine.pt", args.refiner),
                                                ("landmarks.pt", args.landmarks)) if path}
    out = write_bundle(args.model, args.out, args.version, args.changelog, readme, args.description, companions)
    print(f"Wrote the MONAI bundle {out}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinemorph",
                                     description="Vertebral morphometry for lateral spine radiographs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate lateral radiographs with exact ground truth")
    sim.add_argument("--n", type=_positive_int, required=True, help="number of images")
    sim.add_argument("--seed", type=_non_negative_int, default=0, help="series seed (default 0)")
    sim.add_argument("--out", required=True, help="studies folder to write")
    sim.add_argument("--format", choices=["dicom", "nifti"], default="dicom")
    sim.add_argument("--size", default="small", help="small (256 px), full (2000-3000 px) or a height in px")
    sim.add_argument("--fov", choices=["lumbar", "thoracolumbar", "chest", "spine"],
                     help="field of view (default: random lumbar, thoracolumbar or chest)")
    sim.add_argument("--projection", choices=["perspective", "parallel"], default="perspective")
    sim.add_argument("--fracture-rate", type=float, default=0.25, help="share of images with fractures (default 0.25)")
    sim.add_argument("--fracture", action="append", metavar="LEVEL:TYPE:GRADE[:REDUCTION]",
                     help="force a deformity into every image, e.g. L1:wedge:2 (repeatable)")
    sim.add_argument("--preview", action="store_true", help="also write PNG overlays to OUT/previews")
    sim.add_argument("--labelled-fraction", type=float, default=1.0,
                     help="share of images that get a label in labels/final (default 1; truth JSON is always written)")
    sim.add_argument("--irregularity", type=float, default=1.0,
                     help="degeneration, bone texture and overlapping ribs/iliac crests, 0 (smooth phantom) to 2 "
                          "(default 1)")
    sim.add_argument("--randomise", type=float, nargs="?", const=1.0, default=None, metavar="STRENGTH",
                     help="domain randomisation of every image (crop, processing, inversion, collimation, markers, "
                          "text, grid, noise), at STRENGTH (default 1 when given; off without the flag)")
    sim.add_argument("--label-sacrum", action="store_true",
                     help="keep S1 (26) in the labels: the anchor an 'anchored' model learns to name the levels from")
    sim.set_defaults(run=_simulate)

    drr = sub.add_parser("drr", help="render lateral DRRs of a CT, with vertebral-body labels, into a studies folder")
    drr.add_argument("ct", help="CT volume (NIfTI, Hounsfield units)")
    drr.add_argument("vertebrae", help="per-vertebra label volume on the CT's grid (NIfTI)")
    drr.add_argument("--out", required=True, help="studies folder to write")
    drr.add_argument("--labels", choices=["auto", "verse", "totalsegmentator"], default="auto",
                     help="label ids: VerSe codes or TotalSegmentator v2 ids (default: auto, from the largest value)")
    drr.add_argument("--rotations", type=float, nargs="+", metavar="DEG",
                     help="axial rotations in degrees (default: -10 -5 0 5 10)")
    drr.add_argument("--tilts", type=float, nargs="+", metavar="DEG",
                     help="tilts about the anteroposterior axis in degrees (default: 0)")
    drr.add_argument("--spacing", type=float, help="detector pixel spacing in mm (default 0.8)")
    drr.add_argument("--projection", choices=["perspective", "parallel"], default="perspective")
    drr.add_argument("--sdd", type=float, help="source-detector distance in mm (default 1100)")
    drr.add_argument("--source", choices=["right", "left"],
                     help="the patient's side the source is on (default right: a left lateral, facing left)")
    drr.add_argument("--seed", type=_non_negative_int, help="detector noise seed; with --random, the series seed "
                     "(default 0)")
    drr.add_argument("--format", choices=["dicom", "nifti"], default="dicom")
    drr.add_argument("--preview", action="store_true", help="also write PNG overlays to OUT/previews")
    drr.add_argument("--kvp", type=float, help="tube voltage (default 85 kVp; with --random, drawn from 60-120 "
                     "unless given)")
    drr.add_argument("--random", type=_non_negative_int, default=0, metavar="N",
                     help="render N training images instead, each with a random pose (rotation ±15°, tilt ±8°, "
                          "source side), exposure, anatomy changes and fractures made in the CT")
    drr.add_argument("--randomise", type=float, nargs="?", const=1.0, default=None, metavar="STRENGTH",
                     help="with --random: pass every image through the domain-randomisation chain (as simulate's)")
    drr.add_argument("--fracture-rate", type=float, default=0.3,
                     help="with --random: share of images with one to three fractures (default 0.3)")
    drr.add_argument("--endplate-rate", type=float, default=0.1,
                     help="with --random: share of images with an endplate depression (default 0.1)")
    drr.add_argument("--fracture", action="append", metavar="LEVEL:KIND:REDUCTION",
                     help="with --random: put this lesion in every image instead of random ones, e.g. T8:wedge:0.3 "
                          "(kinds: wedge, biconcave, crush, endplate); repeatable")
    drr.set_defaults(run=_drr)

    mea = sub.add_parser("measure", help="six-point morphometry, VCR and Genant grade of a labelmap")
    mea.add_argument("labelmap", help="labelmap (NIfTI, PNG, ...) in VerSe codes or a 0/1 body mask")
    mea.add_argument("--image", help="the radiograph, for its spacing, facing and exposed field (a body its blank "
                     "border cuts is truncated) and as the overlay's background")
    mea.add_argument("--spacing", nargs=2, type=float, metavar=("ROW", "COL"), help="pixel spacing in mm")
    mea.add_argument("--facing", choices=["left", "right"], help="image side the patient's anterior is on")
    mea.add_argument("--anchor", help="level of the lowest body of a binary mask, e.g. L5")
    mea.add_argument("--out", required=True, help="folder for the JSON, CSV and PNG")
    mea.set_defaults(run=_measure)

    tra = sub.add_parser("train", help="train a segmentation network on studies folders")
    tra.add_argument("studies", nargs="+", help="studies folders with labels/final/")
    tra.add_argument("--out", required=True, help="run folder: model.pt, last.pt, log.csv, tb/")
    tra.add_argument("--network", choices=["mdr2unet", "r2unet", "unet"], default="mdr2unet")
    tra.add_argument("--head", choices=["levels", "anchored", "binary"], default="levels",
                     help="levels: T1..L5; anchored: T1..L5 + S1, which names the levels; binary: bodies")
    tra.add_argument("--loss", choices=["dice", "dicebce", "dicece"], default=None,
                     help="default: dicece for levels, dice for binary")
    tra.add_argument("--features", nargs=5, type=int, default=[16, 32, 64, 128, 256])
    tra.add_argument("--dropout", type=float, default=0.1)
    tra.add_argument("--size", type=int, default=256, help="padded square side (the paper: 512)")
    tra.add_argument("--epochs", type=_positive_int, default=30)
    tra.add_argument("--batch", type=_positive_int, default=8)
    tra.add_argument("--lr", type=float, default=1e-3)
    tra.add_argument("--val-fraction", type=float, default=0.2)
    tra.add_argument("--seed", type=_non_negative_int, default=0)
    tra.add_argument("--workers", type=_non_negative_int, default=0)
    tra.add_argument("--init", help="start from these weights (model.pt or a bundle folder)")
    tra.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tra.add_argument("--max-steps", type=_non_negative_int, default=0)
    tra.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    tra.set_defaults(run=_train)

    eva = sub.add_parser("evaluate", help="evaluate a model on studies folders")
    eva.add_argument("studies", nargs="+")
    eva.add_argument("--model", required=True, help="model.pt or a bundle folder")
    eva.add_argument("--split", choices=["all", "val"], default="all", help="val: only the held-out cases")
    eva.add_argument("--val-fraction", type=float, default=0.2)
    eva.add_argument("--seed", type=_non_negative_int, default=0)
    eva.add_argument("--out", help="write the summary JSON here")
    eva.set_defaults(run=_evaluate)

    seg = sub.add_parser("segment", help="segment and measure one radiograph with a trained model, without a server")
    seg.add_argument("image", help="radiograph: DICOM, NIfTI, PNG or JPEG")
    seg.add_argument("--model", default=str(Path(__file__).resolve().parents[2] / "sample-apps" / "spinemorph_levels"),
                     help="a bundle folder or model.pt (default: the shipped model)")
    seg.add_argument("--out", required=True, help="folder for the labelmap, JSON, CSV and PNG")
    seg.add_argument("--device", default="auto", help="cpu, cuda, or auto (CUDA when present)")
    seg.add_argument("--runtime", choices=("torch", "openvino"), default="torch",
                     help="where the networks run on a CPU: torch, or openvino (sooner: the README's Speed; "
                          "pip install 'spinemorph[openvino]')")
    seg.add_argument("--stage1-only", action="store_true",
                     help="skip stage 2 (each body redrawn in its full-resolution crop): stage 1's outlines, faster "
                          "and coarser, graded normal or not at all (no fracture grade: coarse_outline)")
    seg.add_argument("--heights", choices=("mean", "landmarks", "outline"), default="mean",
                     help="where stage 2's heights come from: mean (the default) of the six-point landmark "
                          "network's points and the outline's (0.6 and 0.4), the landmarks alone (fewer fracture "
                          "grades: see the README), or the outline alone (the landmark network is not run)")
    seg.add_argument("--landmarks", action="store_true", help="the same as --heights landmarks (0.3.0's flag)")
    seg.add_argument("--no-detector", action="store_true",
                     help="skip the fracture detector's opinion (fracture_calls) per vertebra")
    seg.add_argument("--output", choices=("files", "dicom"), default="files",
                     help="dicom: also write <stem>.seg.dcm (DICOM SEG) and <stem>.sr.dcm (TID 1500 measurement "
                          "report) referring to the input DICOM")
    seg.set_defaults(run=_segment)

    bun = sub.add_parser("bundle", help="write a trained model as a MONAI bundle (for sample-apps/)")
    bun.add_argument("model", help="model.pt written by spinemorph train")
    bun.add_argument("--out", required=True, help="bundle folder, e.g. sample-apps/spinemorph_levels")
    bun.add_argument("--version", default="0.1.0")
    bun.add_argument("--changelog", default="first release")
    bun.add_argument("--description", default="SpineMorph vertebral body segmentation, one label per level")
    bun.add_argument("--readme", help="Markdown for docs/README.md (data, commands, metrics)")
    bun.add_argument("--facing", help="a facing model (spinemorph facing-train) to ship as models/facing.pt")
    bun.add_argument("--refiner", help="a stage-2 network (spinemorph refine-train) to ship as models/refine.pt")
    bun.add_argument("--landmarks", help="a six-point landmark network on stage 2's crops to ship as "
                                          "models/landmarks.pt")
    bun.set_defaults(run=_bundle)

    from spinemorph.service_cli import add_parsers as add_service  # screen, labels, web: around the server

    add_service(sub, _positive_int)

    from spinemorph.hierarchical.cli import add_parsers as add_hierarchical  # Kim et al. 2019's pipeline

    add_hierarchical(sub)

    from spinemorph.detection.cli import add_parsers as add_detection  # Paik et al. 2024's fracture detector

    add_detection(sub)

    from spinemorph.facing.cli import add_parsers as add_facing  # the facing classifier

    add_facing(sub)
    from spinemorph.refine.cli import add_parsers as add_refine  # stage 2 at native resolution

    add_refine(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"spinemorph {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
