"""Where the infer tasks write their answers: one folder per server process, made at the first answer and removed
when the process exits.

A folder of its own, not the system temp folder itself: the server deletes each answer's file after sending it,
and MONAI Label's client, on the same machine, saves its copy under the same name in the system temp folder,
which must not be the same file.

A server stopped by a signal (a service manager's SIGTERM, Ctrl-C) skips the removal at exit: uvicorn shuts down
cleanly and then re-raises the signal, which ends the process before ``atexit`` runs. So the folder's name carries
the process id, and the next server to answer removes the folders of processes that no longer run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["result_file", "PREFIX"]

PREFIX = "spinemorph-results-"
_folder: str | None = None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _sweep(root: str) -> None:
    """Remove ``root``'s answer folders of server processes that no longer run (their answers were all sent)."""
    for path in Path(root).glob(f"{PREFIX}*-*"):
        pid = path.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def result_file(prefix: str, suffix: str) -> str:
    """Return the path of a new, empty file for an answer (``prefix`` names the task, ``suffix`` the format)."""
    global _folder
    if _folder is None:
        _sweep(tempfile.gettempdir())
        _folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
        atexit.register(shutil.rmtree, _folder, True)
    return tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix, dir=_folder, delete=False).name
