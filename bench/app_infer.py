"""Infer round trip through the server for a 2048² DX on CPU, against a stock MONAI Label BasicInferTask UNet app.

Usage: .venv/bin/python bench/app_infer.py [--n 8] [--size 2048] [--bundle sample-apps/spinemorph_levels]
                                          [--runtimes torch,openvino]

Both apps are real `monailabel start_server` processes on this machine, serving the same simulated DICOM DX,
asked through monailabel's client, one request at a time, in the same run (alternating); SpineMorph once per
runtime (``--conf runtime``: its networks on torch, and on OpenVINO where it is installed). SpineMorph's answer is
split into load, preprocess, network, postprocess, stage 2, landmarks, morphometry and write (from the result
JSON), plus HTTP and client overhead. The stock app follows MONAI Label's radiology sample for a 2D image:
ITKReader, intensity scaling, a resize to the network's 256² input, MONAI's UNet, softmax, argmax, a resize back and
MONAI Label's writer. Prints a table and the ratio, and writes bench/out/app_infer.png.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from monai.networks.nets import UNet  # noqa: E402
from monailabel.client import MONAILabelClient  # noqa: E402

from spinemorph.data.dataset import simulate_studies  # noqa: E402
from spinemorph.data.simulate import SimConfig  # noqa: E402
from tests.app.server import running_server  # noqa: E402

STAGES = ("load_s", "field_s", "normalise_s", "preprocess_s", "network_s", "postprocess_s", "stage2_split_s",
          "stage2_crops_s", "stage2_network_s", "stage2_paste_s", "landmarks_crops_s", "landmarks_network_s",
          "morphometry_s", "detector_s", "write_s")
LEAN = {"stage2": False, "detector": False}  # stage 1 alone, no detector opinion
STOCK_APP = '''
import os
import torch
from monai.inferers import SimpleInferer
from monai.networks.nets import UNet
from monai.transforms import (Activationsd, AsDiscreted, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized,
                              ScaleIntensityd, SqueezeDimd)
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

LABELS = {f"level{i}": i for i in range(1, 18)}


class StockUNet(BasicInferTask):
    def __init__(self, path):
        super().__init__(path=path, network=UNet(2, 1, 18, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2),
                         type=InferType.SEGMENTATION, labels=LABELS, dimension=2, description="stock UNet")

    def pre_transforms(self, data=None):
        return [LoadImaged(keys="image", reader="ITKReader"), EnsureChannelFirstd(keys="image"),
                SqueezeDimd(keys="image", dim=-1), ScaleIntensityd(keys="image"),
                Resized(keys="image", spatial_size=(256, 256))]

    def inferer(self, data=None):
        return SimpleInferer()

    def post_transforms(self, data=None):
        # MONAI Label's Restored mis-shapes an H×W×1 radiograph (docs/KNOWN-TRAPS.md): resize back instead.
        shape = tuple(int(s) for s in data["image"].meta["spatial_shape"][:2])
        return [EnsureTyped(keys="pred", device="cpu"), Activationsd(keys="pred", softmax=True),
                AsDiscreted(keys="pred", argmax=True), Resized(keys="pred", spatial_size=shape, mode="nearest"),
                SqueezeDimd(keys="pred", dim=0)]


class StockApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="stock")

    def init_datastore(self):
        return LocalDatastore(self.studies, extensions=["*.dcm"], auto_reload=False)

    def init_infers(self):
        return {"stock_unet": StockUNet(os.path.join(self.app_dir, "model.pt"))}
'''


def _rounds(client: MONAILabelClient, model: str, image_id: str, params: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    _, result = client.infer(model, image_id, params)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--bundle", default=str(REPO / "sample-apps" / "spinemorph_levels"))
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    parser.add_argument("--runtimes", default="torch,openvino" if importlib.util.find_spec("openvino") else "torch",
                        help="SpineMorph's runtimes to serve, each in its own server (default: both when installed)")
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (image,) = simulate_studies(1, 42, tmp / "studies", SimConfig(size=(args.size, args.size), fov="lumbar"),
                                    progress=False)
        image_id = image.name[:-4]
        stock = tmp / "stock_app"
        stock.mkdir()
        (stock / "main.py").write_text(textwrap.dedent(STOCK_APP))
        torch.save(UNet(2, 1, 18, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2).state_dict(),
                   stock / "model.pt")
        servers = {}
        with contextlib.ExitStack() as stack:
            for runtime in runtimes:
                conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": args.bundle,
                        "model_dir": tmp / f"models-{runtime}", "runtime": runtime}
                url = stack.enter_context(running_server(tmp / "studies", conf, tmp / f"ours-{runtime}.log"))
                servers[runtime] = MONAILabelClient(url, tmpdir=str(tmp))  # it leaves its answers in this run's tmp
            url = stack.enter_context(running_server(tmp / "studies", {}, tmp / "stock.log", app=stock))
            theirs = MONAILabelClient(url, tmpdir=str(tmp))
            for client in servers.values():
                _rounds(client, "spinemorph_levels", image_id, {})  # warm-up: first model load, first ITK read
            _rounds(theirs, "stock_unet", image_id, {"result_extension": ".nii.gz"})
            ours_t = {r: [] for r in runtimes}
            lean_t, stages = {r: [] for r in runtimes}, {r: [] for r in runtimes}
            theirs_t = []
            for _ in range(args.n):  # alternate, so all see the same machine load
                for runtime, client in servers.items():
                    t, result = _rounds(client, "spinemorph_levels", image_id, {})
                    ours_t[runtime].append(t)
                    stages[runtime].append(result["timings"])
                    lean_t[runtime].append(_rounds(client, "spinemorph_levels", image_id, dict(LEAN))[0])
                theirs_t.append(_rounds(theirs, "stock_unet", image_id, {"result_extension": ".nii.gz"})[0])
    theirs_med = statistics.median(theirs_t)
    med, ours_med, lean_med = {}, {}, {}
    for runtime in runtimes:
        med[runtime] = {k: statistics.median(s.get(k, 0.0) for s in stages[runtime]) for k in STAGES}
        ours_med[runtime], lean_med[runtime] = statistics.median(ours_t[runtime]), statistics.median(lean_t[runtime])
        med[runtime]["http_client_s"] = ours_med[runtime] - sum(med[runtime].values())
    print(f"Infer round trip, {args.size}×{args.size} DICOM DX, CPU ({torch.get_num_threads()} threads), "
          f"median of {args.n} (no GPU lent to this run: GPU figures n/a)")
    print(f"{'stage':16s} " + " ".join(f"{r:>9s}" for r in runtimes))
    for k in med[runtimes[0]]:
        print(f"{k[:-2]:16s} " + " ".join(f"{med[r][k]:9.3f}" for r in runtimes))
    print(f"{'SpineMorph total':16s} " + " ".join(f"{ours_med[r]:9.3f}" for r in runtimes) +
          "   (labelmap + morphometry JSON)")
    print(f"{'stage 1 only':16s} " + " ".join(f"{lean_med[r]:9.3f}" for r in runtimes) +
          "   (stage2=false, detector=false)")
    print(f"{'stock UNet total':16s} {theirs_med:9.3f}   (labelmap only)")
    for runtime in runtimes:
        ratio = theirs_med / ours_med[runtime]
        verdict = "met" if ratio >= 1.5 else "NOT met"
        print(f"SpineMorph on {runtime} is {ratio:.2f}x the speed of the stock pipeline (goal >= 1.5x: {verdict}); "
              f"stage 1 alone {theirs_med / lean_med[runtime]:.2f}x")
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.9 * len(runtimes)))
    colours = plt.get_cmap("tab20").colors  # one colour per stage: tab10 would repeat two
    for i, runtime in enumerate(runtimes):
        left = 0.0
        for (k, v), colour in zip(med[runtime].items(), colours, strict=False):
            ax.barh(f"SpineMorph ({runtime})", v, left=left, label=k[:-2] if i == 0 else None, color=colour)
            left += v
        ax.barh(f"SpineMorph ({runtime}), stage 1 only", lean_med[runtime], color="black")
    ax.barh("stock BasicInferTask UNet", theirs_med, color="grey")
    ax.set_xlabel(f"seconds per infer round trip, {args.size}² DX, CPU")
    ax.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.4, -0.28), frameon=False)  # below the bars
    fig.tight_layout()
    fig.savefig(out / "app_infer.png", dpi=110, bbox_inches="tight")
    print(f"Wrote {out / 'app_infer.png'}")


if __name__ == "__main__":
    main()
