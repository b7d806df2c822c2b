"""Which weights answered: a model file's SHA-256 and version, so a user (and a test) can tell one model from another.

A bundle's version is its ``configs/metadata.json`` "version"; a checkpoint's is the "version" it was saved with
(``publish_checkpoint`` writes one when a train task publishes), else "unversioned". The hash is of the weights file
itself, so two copies of the same weights share it and any retraining changes it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from spinemorph.store import atomic_write

__all__ = ["weights_file", "weights_identity", "publish_checkpoint", "SHA_DIGITS"]

SHA_DIGITS = 12  # enough to tell models apart; the whole digest is not needed in a reply
_cache: dict[tuple[str, int, int], dict] = {}
_lock = threading.Lock()


def weights_file(path: str | Path, name: str = "model.pt") -> Path:
    """Return the weights file of ``path``: ``models/<name>`` of a bundle folder, else ``path`` itself."""
    path = Path(path)
    return path / "models" / name if path.is_dir() else path


def _version(path: Path, file: Path) -> str:
    if path.is_dir():
        meta = path / "configs" / "metadata.json"
        return str(json.loads(meta.read_text()).get("version", "unversioned")) if meta.is_file() else "unversioned"
    import torch  # a checkpoint carries its version inside

    ckpt = torch.load(file, map_location="cpu", weights_only=False)
    return str(ckpt.get("version", "unversioned")) if isinstance(ckpt, dict) else "unversioned"


def weights_identity(path: str | Path, name: str = "model.pt") -> dict[str, str]:
    """Return {"path", "sha256" (first 12 hex digits), "version"} of the weights at ``path`` (bundle or checkpoint).

    Computed once per file state (path, size, modification time), so a served model pays for it only when its
    weights change.
    """
    path = Path(path)
    file = weights_file(path, name)
    stat = file.stat()
    key = (str(file), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _cache:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:SHA_DIGITS]
            _cache[key] = {"path": str(path), "sha256": digest, "version": _version(path, file)}
        return dict(_cache[key])


def publish_checkpoint(best: str | Path, published: str | Path, version: str) -> Path:
    """Copy the checkpoint ``best`` to ``published`` with ``version`` inside, atomically; return ``published``.

    The copy is written and flushed to a temporary file beside ``published`` and renamed over it, so a reader (or
    a kill at any moment) sees the old model or the new one whole, never half of one.
    """
    import torch

    best, published = Path(best), Path(published)
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{best} is not a SpineMorph checkpoint (no state_dict).")
    published.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(published, lambda fh: torch.save({**ckpt, "version": version}, fh))
