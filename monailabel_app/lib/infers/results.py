"""Where the infer tasks write their answers: one folder per server process, made at the first answer and removed
when the process exits.

A folder of its own, not the system temp folder itself: the server deletes each answer's file after sending it,
and MONAI Label's client, on the same machine, saves its copy under the same name in the system temp folder,
which must not be the same file.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

__all__ = ["result_file"]

_folder: str | None = None


def result_file(prefix: str, suffix: str) -> str:
    """Return the path of a new, empty file for an answer (``prefix`` names the task, ``suffix`` the format)."""
    global _folder
    if _folder is None:
        _folder = tempfile.mkdtemp(prefix="spinemorph-results-")
        atexit.register(shutil.rmtree, _folder, True)
    return tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix, dir=_folder, delete=False).name
