"""Load on a real server: concurrent infers, concurrent label saves, and label saves while training runs.

Usage: .venv/bin/python bench/load.py [--quick] [--size 1024] [--n-infers 100] [--n-saves 20] [--infer-concurrency 2]
       [--epochs 2] [--train-saves 3] [--weights sample-apps/spinemorph_levels]

One `monailabel start_server` of the SpineMorph app on simulated DICOM DX studies (every image labelled), then:
``infers`` sends --n-infers infer requests at once (the server runs --infer-concurrency of them at a time);
``saves, one image`` sends --n-saves different labels for one image at once, ``saves, many images`` one label to
each of --n-saves images at once; ``save while training`` starts a train task and saves labels one after another
while it runs. Every request is a thread with requests; the threads of a scenario start together.

Afterwards every saved label is read back with spinemorph.io.read_labelmap: each final label must equal a version
that was sent (the last one for sequential saves), and the labels it replaced must all be kept as versions, so that
no save is lost or torn. Prints p50/p95 latency per scenario, errors, problems and the peak memory (RSS) of the
server and its children (sampled every 0.2 s); writes bench/out/load.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402

from spinemorph.data.dataset import simulate_studies  # noqa: E402
from spinemorph.data.simulate import SimConfig  # noqa: E402
from spinemorph.io import read_labelmap, read_radiograph, write_labelmap  # noqa: E402
from spinemorph.store import LabelVersions  # noqa: E402
from tests.app.server import serving  # noqa: E402

MODEL = "spinemorph_levels"
TIMEOUT = 900.0  # seconds a request may wait: the last of 100 queued infers waits for the 99 before it


@dataclass
class Outcome:
    """One scenario: each request's latency, the failed requests and the label checks that failed."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    span: tuple[float, float] = (0.0, 0.0)

    def percentile(self, q: float) -> float:
        """Return the q-th percentile of the latencies in seconds (NaN without any)."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def make_studies(root: Path, n: int, size: int, seed: int = 5) -> list[str]:
    """Simulate ``n`` labelled lumbar DICOM DX radiographs ``size`` px high under ``root``; return their ids."""
    paths = simulate_studies(n, seed, root, SimConfig(size=size, fov="lumbar"), progress=False)
    return [p.name[: -len(".dcm")] for p in paths]


@contextmanager
def memory_sampler(pid: int, every: float = 0.2):
    """Sample the RSS of process ``pid`` and all its children every ``every`` s; yield the (time, bytes) list."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        root = psutil.Process(pid)
        while not stop.is_set():
            total = 0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # a child that has just ended
                    pass
            samples.append((time.time(), total))
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _timed(send) -> tuple[float, str | None]:
    """Return the seconds ``send()`` took and None, or an error line for a failed request."""
    start = time.perf_counter()
    try:
        response = send()
        error = None if response.ok else f"{response.status_code} {response.text[:200]}"
    except requests.RequestException as err:
        error = f"{type(err).__name__}: {err}"[:200]
    return time.perf_counter() - start, error


def at_once(name: str, sends: list) -> Outcome:
    """Run every request of ``sends`` (callables) in its own thread, released together; return the outcome."""
    barrier = threading.Barrier(len(sends))

    def run(send):
        barrier.wait()
        return _timed(send)

    start = time.time()
    with ThreadPoolExecutor(max_workers=len(sends)) as pool:
        results = list(pool.map(run, sends))
    outcome = Outcome(name, span=(start, time.time()))
    for seconds, error in results:
        outcome.latencies.append(seconds)
        if error:
            outcome.errors.append(error)
    return outcome


def infer_request(url: str, image_id: str):
    """Return a callable that asks the server to infer ``image_id`` (labelmap and JSON back, as clients ask)."""
    return lambda: requests.post(f"{url}/infer/{MODEL}", params={"image": image_id}, timeout=TIMEOUT)


def save_request(url: str, image_id: str, label_file: Path):
    """Return a callable that saves ``label_file`` as the final label of ``image_id``."""
    def send():
        with open(label_file, "rb") as fh:
            return requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                                files={"label": (label_file.name, fh)}, timeout=TIMEOUT)
    return send


def label_versions(studies: Path, image_id: str, n: int, out: Path) -> tuple[list[Path], list[np.ndarray]]:
    """Write ``n`` distinct valid labels for ``image_id`` (its label, with the first k+1 labelled pixels cleared);
    return their files and arrays."""
    image = read_radiograph(studies / f"{image_id}.dcm")
    base = read_labelmap(studies / "labels" / "final" / f"{image_id}.nii.gz")[0]
    marked = np.flatnonzero(base)
    if len(marked) <= n:
        raise ValueError(f"The label of {image_id} marks {len(marked)} pixels; {n} versions need more.")
    files, arrays = [], []
    for k in range(n):
        labels = base.copy()
        labels.flat[marked[: k + 1]] = 0
        files.append(out / f"{image_id}.v{k}.nii.gz")
        write_labelmap(files[-1], labels, image)
        arrays.append(labels)
    return files, arrays


def check_saved(studies: Path, image_id: str, original: np.ndarray, sent: list[np.ndarray],
                last: np.ndarray | None = None) -> list[str]:
    """Return what is wrong with ``image_id``'s labels after ``sent`` were all saved: the final label must read and
    equal a sent version (``last`` when given), and the original plus the sent versions must each be there exactly
    once, as the final label or a kept version (none lost, none torn)."""
    problems = []
    try:
        final = read_labelmap(studies / "labels" / "final" / f"{image_id}.nii.gz")[0]
    except Exception as err:  # whatever the reader raises, the label is corrupt
        return [f"{image_id}: the final label does not read ({err})"]
    if not any(np.array_equal(final, s) for s in sent):
        problems.append(f"{image_id}: the final label is none of the {len(sent)} versions sent")
    elif last is not None and not np.array_equal(final, last):
        problems.append(f"{image_id}: the final label is not the last one saved")
    kept = [read_labelmap(p)[0] for p in LabelVersions(studies).list(image_id, "final")]
    for what, array in [("the original label", original), *((f"version {k}", s) for k, s in enumerate(sent))]:
        found = sum(np.array_equal(array, x) for x in [final, *kept])
        if found != 1:
            problems.append(f"{image_id}: {what} is there {found} times, not once")
    return problems


def saves(url: str, studies: Path, name: str, targets: list[str], per_image: int, out: Path) -> Outcome:
    """Save ``per_image`` labels to each image of ``targets``, all at once; check every label afterwards."""
    jobs, sent, originals = [], {}, {}
    for image_id in targets:
        originals[image_id] = read_labelmap(studies / "labels" / "final" / f"{image_id}.nii.gz")[0]
        files, sent[image_id] = label_versions(studies, image_id, per_image, out)
        jobs += [save_request(url, image_id, f) for f in files]
    outcome = at_once(name, jobs)
    for image_id in targets:
        outcome.problems += check_saved(studies, image_id, originals[image_id], sent[image_id])
    return outcome


def _training(url: str) -> bool:
    return requests.get(f"{url}/train/", params={"check_if_running": "true"}, timeout=30).status_code == 200


def save_while_training(url: str, studies: Path, image_id: str, epochs: int, n_saves: int, out: Path,
                        timeout: float = 1200.0) -> Outcome:
    """Start a train task; once it runs, save ``n_saves`` labels for ``image_id`` one by one (at least one while
    it runs); wait for it to finish. The final label must be the last one saved."""
    original = read_labelmap(studies / "labels" / "final" / f"{image_id}.nii.gz")[0]
    files, sent = label_versions(studies, image_id, n_saves, out)
    outcome = Outcome("save while training", span=(time.time(), 0.0))
    started = requests.post(f"{url}/train/{MODEL}", json={"max_epochs": epochs, "batch_size": 2}, timeout=60)
    if not started.ok:
        outcome.errors.append(f"train: {started.status_code} {started.text[:200]}")
        return outcome
    deadline = time.time() + timeout
    while not _training(url) and time.time() < deadline:
        time.sleep(0.2)
    during = 0
    for k, path in enumerate(files):
        running = _training(url)
        if k and not running:
            break
        seconds, error = _timed(save_request(url, image_id, path))
        during += running and _training(url)  # running before and after the save
        outcome.latencies.append(seconds)
        outcome.errors += [f"save {k}: {error}"] if error else []
        time.sleep(0.5)
    if not during:
        outcome.problems.append("no save was made while the train task ran: it ended first; give it more epochs")
    while _training(url) and time.time() < deadline:
        time.sleep(1)
    status = requests.get(f"{url}/train/", timeout=30).json()
    if status.get("status") != "DONE":
        outcome.errors.append(f"training ended {status.get('status')}: {str(status.get('details'))[-300:]}")
    saved = len(outcome.latencies)
    outcome.problems += check_saved(studies, image_id, original, sent[:saved], last=sent[saved - 1])
    outcome.span = (outcome.span[0], time.time())
    return outcome


def run_scenarios(url: str, studies: Path, ids: list[str], n_infers: int, n_saves: int, epochs: int | None,
                  train_saves: int = 3) -> list[Outcome]:
    """Run the scenarios against the server at ``url`` (``epochs`` None: no training); needs n_saves + 2 ids."""
    if len(ids) < n_saves + 2:
        raise ValueError(f"{n_saves} saves to different images need {n_saves + 2} images, not {len(ids)}.")
    requests.post(f"{url}/infer/{MODEL}", params={"image": ids[0]}, timeout=TIMEOUT)  # warm-up: first load
    with tempfile.TemporaryDirectory(prefix="spinemorph-load-") as out:
        out = Path(out)
        outcomes = [at_once("infers", [infer_request(url, ids[i % len(ids)]) for i in range(n_infers)]),
                    saves(url, studies, "saves, one image", ids[:1], n_saves, out),
                    saves(url, studies, "saves, many images", ids[1:n_saves + 1], 1, out)]
        if epochs is not None:
            outcomes.append(save_while_training(url, studies, ids[n_saves + 1], epochs, train_saves, out))
    return outcomes


def peak(samples: list[tuple[float, int]], span: tuple[float, float] | None = None, every: float = 0.2) -> float:
    """Return the largest RSS sample in MiB (within ``span`` when given, and the sample that follows it)."""
    values = [b for t, b in samples if span is None or span[0] <= t <= span[1] + every]
    return max(values, default=0) / 2**20


def report(outcomes: list[Outcome], samples: list[tuple[float, int]], png: Path, title: str) -> None:
    """Print the table and write the plot: latency per scenario, RSS over time with the scenarios shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print(title)
    print(f"{'scenario':20s} {'requests':>8s} {'p50 s':>7s} {'p95 s':>7s} {'max s':>7s} {'errors':>6s} "
          f"{'bad labels':>10s} {'peak RSS MiB':>12s}")
    for o in outcomes:
        print(f"{o.name:20s} {len(o.latencies):8d} {o.percentile(50):7.2f} {o.percentile(95):7.2f} "
              f"{max(o.latencies, default=float('nan')):7.2f} {len(o.errors):6d} {len(o.problems):10d} "
              f"{peak(samples, o.span):12.0f}")
    print(f"peak RSS of the server and its children over the run: {peak(samples):.0f} MiB")
    for o in outcomes:
        for line in (o.errors + o.problems)[:5]:
            print(f"  {o.name}: {line}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(outcomes))
    left.bar(x - 0.2, [o.percentile(50) for o in outcomes], 0.4, label="p50")
    left.bar(x + 0.2, [o.percentile(95) for o in outcomes], 0.4, label="p95")
    left.set_xticks(x, [o.name for o in outcomes], fontsize=7, rotation=15)
    left.set_ylabel("seconds per request")
    left.legend()
    t0 = samples[0][0] if samples else 0.0
    right.plot([t - t0 for t, _ in samples], [b / 2**20 for _, b in samples], color="k", lw=1)
    for k, o in enumerate(outcomes):
        right.axvspan(o.span[0] - t0, o.span[1] - t0, alpha=0.2, color=f"C{k}", label=o.name)
    right.set_xlabel("seconds")
    right.set_ylabel("RSS, server + children (MiB)")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"Wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 infers, 5 saves, 256 px, 1 epoch")
    parser.add_argument("--size", type=int, default=1024, help="image height in pixels")
    parser.add_argument("--n-infers", type=int, default=100)
    parser.add_argument("--n-saves", type=int, default=20)
    parser.add_argument("--infer-concurrency", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="train epochs (0: no training scenario)")
    parser.add_argument("--train-saves", type=int, default=3, help="labels saved one by one while training runs")
    parser.add_argument("--weights", default=str(REPO / "sample-apps" / "spinemorph_levels"))
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    if parser.parse_args().quick:  # smaller defaults; options given still win
        parser.set_defaults(size=256, n_infers=10, n_saves=5, epochs=1, train_saves=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = make_studies(tmp / "studies", args.n_saves + 2, args.size)
        conf = {"models": MODEL, f"{MODEL}_weights": args.weights, "model_dir": tmp / "models",
                "infer_concurrency": args.infer_concurrency}
        with serving(tmp / "studies", conf, tmp / "server.log",  # scoring on, as a server runs by default
                     env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "true"}) as server, \
                memory_sampler(server.proc.pid) as samples:
            outcomes = run_scenarios(server.url, tmp / "studies", ids, args.n_infers, args.n_saves,
                                     args.epochs or None, args.train_saves)
    report(outcomes, samples, Path(args.out) / "load.png",
           f"{args.n_infers} infers and {args.n_saves} saves at once, {args.size} px DICOM DX, CPU, "
           f"infer_concurrency {args.infer_concurrency}")


if __name__ == "__main__":
    main()
