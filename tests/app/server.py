"""Start and stop a real ``monailabel start_server`` of the SpineMorph app on a free local port."""

from __future__ import annotations

import csv
import ctypes
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A started server: its URL and its process (the leader of its own process group)."""

    url: str
    proc: subprocess.Popen


@contextmanager
def serving(studies: Path, conf: dict[str, str], log: Path, timeout: float = 120.0,
            app: Path = REPO / "monailabel_app", ready: str = "/info/",
            wrap: Callable[[list[str]], list[str]] | None = None, env: dict[str, str] | None = None):
    """Yield the Server of ``app`` started on ``studies`` with ``conf``, once ``ready`` answers (a path that needs
    no login when authentication is on, such as "/auth/"); stop it and every process it started afterwards.

    The server runs in a session of its own, as a service manager starts it, so that its train and batch
    subprocesses share its process group (see kill_group). Its temporary files go to a folder beside ``log``:
    MONAI Label leaves some behind (dataset zips, its log configuration). MONAI Label's automatic scoring (every
    scoring method in a subprocess at start, after each next sample and after each training) is off unless ``env``
    turns it on: a test that needs scores asks for them, and the subprocesses would hold the 2 cores of CI for
    nothing. ``wrap`` rewrites the command line (e.g. to run it under ``unshare``); ``env`` adds to its environment.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies",
           str(studies), "--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        cmd += ["--conf", key, str(value)]
    tmp = log.with_name(f"{log.name}.tmp")  # the server's temporary files (MONAI Label leaves some) under pytest's
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MONAI_LABEL_SESSIONS": "false", "PYTHONUNBUFFERED": "1",
           "TMPDIR": str(tmp), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false", **(env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen(wrap(cmd) if wrap else cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, f"{url}{ready}", log, "The server", timeout)
        yield Server(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with suppress(ProcessLookupError):  # a train task the server left running
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until_answering(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float) -> None:
    """Return once ``url`` answers 2xx; raise RuntimeError with the end of ``log`` if ``proc`` exits or ``timeout``
    passes first."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def running_server(studies: Path, conf: dict[str, str], log: Path, timeout: float = 120.0,
                   app: Path = REPO / "monailabel_app", ready: str = "/info/", env: dict[str, str] | None = None):
    """Yield the URL of a server of ``app`` started on ``studies`` with ``conf`` (see serving); stop it afterwards."""
    with serving(studies, conf, log, timeout, app, ready, env=env) as server:
        yield server.url


def _subreaper(on: bool) -> None:
    """Make this process (Linux) the parent of the descendants that lose theirs, so that it can reap them."""
    ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def kill_group(proc: subprocess.Popen, timeout: float = 30.0) -> list[str]:
    """SIGKILL ``proc``'s whole process group at once, as a service manager stops a unit, and wait for every member
    to be gone; return the members still there after ``timeout`` ("pid name status"), none when all died.

    The members are reaped here (this process adopts them while they die), so no zombie keeps a pid that a
    restarted server would take for a live writer.
    """
    group = os.getpgid(proc.pid)
    _subreaper(True)
    try:
        os.killpg(group, signal.SIGKILL)
        proc.wait(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with suppress(ChildProcessError):  # the members this process adopted, once dead
                while os.waitpid(-group, os.WNOHANG)[0]:
                    pass
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return []
            time.sleep(0.05)
    finally:
        _subreaper(False)
    left = [p for p in psutil.process_iter(["pid", "name", "status"]) if _group_of(p.pid) == group]
    return [f"{p.info['pid']} {p.info['name']} {p.info['status']}" for p in left]


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def finished_training(client, timeout: float = 240.0) -> dict:
    """Return the server's training status once the run is DONE; fail with its last lines if it is not."""
    deadline, status = time.time() + timeout, {}
    while time.time() < deadline:
        status = client.train_status()
        if status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(2)
    assert status.get("status") == "DONE", json.dumps(status)[-2000:]
    return status


@contextmanager
def watching(path: Path, every: float = 0.01):
    """Read ``path`` over and over in a thread while the block runs; yield the set of SHA-256 digests seen (None
    while it is absent). A file written in place shows up as digests of its partial states; one renamed into
    place shows only its whole versions."""
    seen: set[str | None] = set()
    stop = threading.Event()

    def look() -> None:
        while not stop.is_set():
            try:
                seen.add(hashlib.sha256(path.read_bytes()).hexdigest()[:12])
            except FileNotFoundError:
                seen.add(None)
            time.sleep(every)

    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def assert_training_mechanics(published: Path, log_csv: Path, stats: dict, seen: set, loss: str = "train_loss",
                              falls: bool = True, before: frozenset = frozenset()) -> None:
    """Check what a finished train task must leave, whatever the floats came to on this CPU: a finite loss in
    every logged row (the sum of the ``loss`` columns, a prefix; falling from the first row to the last when
    ``falls``), the published file whole and alone
    (no temporary file beside it; the watcher saw only its whole versions: the new one, or those in ``before``),
    and the stats naming its SHA-256 and a trained version."""
    rows = list(csv.DictReader(open(log_csv)))
    losses = [sum(float(v) for k, v in r.items() if k.startswith(loss)) for r in rows]
    assert losses and all(math.isfinite(v) for v in losses), losses
    if falls:
        assert losses[-1] < losses[0], losses
    digest = hashlib.sha256(published.read_bytes()).hexdigest()[:12]
    assert stats["published"] == str(published) and stats["sha256"] == digest, stats
    assert "+trained." in stats["version"], stats["version"]
    assert not [p.name for p in published.parent.iterdir() if p.name.endswith(".tmp")]
    assert seen - {None} <= {digest, *before}, seen
