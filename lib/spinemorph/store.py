"""Files that must never be half-written or lost: atomic copies, label versions and a trash folder.

A studies folder keeps what SpineMorph must not lose under ``.spinemorph/``, a folder MONAI Label never lists:

    .spinemorph/label-versions/<tag>/<image id>/<UTC stamp>.nii.gz   every label a save replaced
    .spinemorph/trash/<UTC stamp>/<files>                          images and labels removed through the API

``spinemorph labels STUDIES --image ID`` lists an image's versions and restores one.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = [
    "Staged", "atomic_copy", "atomic_write", "atomic_write_text", "remove_stale_temporaries", "LabelVersions",
    "to_trash", "HIDDEN",
]

HIDDEN = ".spinemorph"
TMP_SUFFIX = ".tmp"


def _stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _temporary(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}{TMP_SUFFIX}")


class Staged:
    """A file written and flushed beside its destination under a hidden temporary name, not yet in place.

    ``commit`` renames it over the destination (no space needed, atomic); ``discard`` removes it. Staging every
    file of a change before committing any lets a change that runs out of space fail with nothing changed.
    """

    def __init__(self, dest: str | Path, write: Callable[[BinaryIO], object]) -> None:
        self.dest = Path(dest)
        self.tmp = _temporary(self.dest)
        try:
            with open(self.tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            self.discard()
            raise

    @classmethod
    def copy(cls, source: str | Path, dest: str | Path) -> Staged:
        with open(source, "rb") as src:
            return cls(dest, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))

    def commit(self) -> Path:
        os.replace(self.tmp, self.dest)
        return self.dest

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def atomic_write(dest: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a binary file that becomes ``dest`` atomically once it returns: a reader, or a kill at any
    moment, sees the old file or the new one whole. If writing fails (a full disk), the temporary file is removed,
    ``dest`` is untouched and the error propagates."""
    staged = Staged(dest, write)
    try:
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


def atomic_copy(source: str | Path, dest: str | Path) -> Path:
    """Copy ``source`` to ``dest`` atomically (see atomic_write)."""
    staged = Staged.copy(source, dest)
    try:
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


def atomic_write_text(dest: str | Path, text: str) -> Path:
    """Write ``text`` to ``dest`` atomically (see atomic_write)."""
    return atomic_write(dest, lambda fh: fh.write(text.encode()))


def _alive(pid: int) -> bool:
    """True if process ``pid`` runs (a zombie, dead but not yet collected, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):
        return True


def remove_stale_temporaries(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (``.<name>.<pid>.tmp`` whose process is
    gone); return them. A file whose writer still runs is left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(f".*{TMP_SUFFIX}") if recursive else folder.glob(f".*{TMP_SUFFIX}")
    removed = []
    for path in found:
        pid = path.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if path.is_file() and pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class LabelVersions:
    """The labels that saves replaced, per tag and image, oldest first."""

    def __init__(self, studies: str | Path) -> None:
        self.root = Path(studies) / HIDDEN / "label-versions"

    def folder(self, image_id: str, tag: str) -> Path:
        for value in (image_id, tag):
            if not value or "/" in value or "\\" in value or value in (".", "..") or value.startswith(".."):
                raise ValueError(f"{value!r} is not an image id or label tag (no paths).")
        return self.root / tag / image_id

    def keep(self, current: str | Path, image_id: str, tag: str) -> Path:
        """Keep the label ``current`` (about to be replaced) as a new version; return its path.

        A hard link when the file system allows one (no data is copied, so it works on a full disk; the rename
        that replaces ``current`` then leaves the version holding the old bytes), else an atomic copy.
        """
        current = Path(current)
        folder = self.folder(image_id, tag)
        folder.mkdir(parents=True, exist_ok=True)
        ext = "".join(current.suffixes[-2:]) if current.name.endswith(".nii.gz") else current.suffix
        version = folder / f"{_stamp()}{ext}"
        try:
            os.link(current, version)
        except OSError:
            atomic_copy(current, version)
        return version

    def list(self, image_id: str, tag: str = "final") -> list[Path]:
        folder = self.folder(image_id, tag)
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []

    def restore(self, studies_label: str | Path, image_id: str, tag: str = "final", version: str | None = None) -> Path:
        """Put a kept version back as the label ``studies_label`` (the newest version unless ``version`` names
        one by its stamp); the label it replaces is kept as a version first. Return the version restored."""
        versions = self.list(image_id, tag)
        chosen = [v for v in versions if version is None or v.name.startswith(version)]
        if not chosen:
            known = ", ".join(v.name for v in versions) or "none"
            raise FileNotFoundError(f"No kept version {version or ''} of the {tag} label of {image_id} "
                                    f"(kept: {known}).")
        source = chosen[-1]
        target = Path(studies_label)
        if target.exists():
            self.keep(target, image_id, tag)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(source, target)
        return source


def to_trash(studies: str | Path, paths: list[str | Path]) -> Path:
    """Move ``paths`` (files inside ``studies``) into a new folder of the studies' trash; return that folder.

    Each file keeps its path relative to the studies folder, so putting it back is one ``mv``.
    """
    studies = Path(studies).resolve()
    folder = studies / HIDDEN / "trash" / _stamp()
    for path in paths:
        path = Path(path).resolve()
        dest = folder / path.relative_to(studies)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    return folder
