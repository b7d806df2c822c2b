"""The page's own work folder, when none is given: removed at exit (Ctrl-C), but for the exports made in it, which
stay where the log says. Downloads and labels are copies of what the server holds; an export is the user's file."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path

__all__ = ["own_workdir", "tidy"]

log = logging.getLogger(__name__)


def own_workdir() -> Path:
    """Return a new ``spinemorph-web-*`` temporary folder that ``tidy`` clears at Python's exit."""
    folder = Path(tempfile.mkdtemp(prefix="spinemorph-web-"))
    atexit.register(tidy, folder)
    return folder


def tidy(folder: Path) -> Path | None:
    """Remove ``folder`` except its ``exports`` when that holds a file; return the exports folder kept, or None."""
    exports = folder / "exports"
    if not (exports.is_dir() and any(exports.iterdir())):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    for child in folder.iterdir():
        if child != exports:
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
    log.warning("SpineMorph web: the files exported in this session stay in %s", exports)
    return exports
