"""The page's own work folder (web/spinemorph_web/workdir.py): plain Python, no browser or trame needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "web")]
from spinemorph_web.workdir import tidy  # noqa: E402


def _work(folder: Path, export: bool) -> Path:
    (folder / "exports").mkdir(parents=True)
    (folder / "downloads").mkdir()
    (folder / "downloads" / "film.nii.gz").write_bytes(b"copy of the server's")
    (folder / "label.nii.gz").write_bytes(b"sent")
    if export:
        (folder / "exports" / "film-morphometry.csv").write_text("level,grade\nL1,0\n")
    return folder


def test_a_folder_without_exports_is_removed(tmp_path):
    folder = _work(tmp_path / "w", export=False)
    assert tidy(folder) is None and not folder.exists()


def test_exports_stay_and_the_rest_goes(tmp_path):
    folder = _work(tmp_path / "w", export=True)
    kept = tidy(folder)
    assert kept == folder / "exports" and [p.name for p in folder.iterdir()] == ["exports"]
    assert (kept / "film-morphometry.csv").read_text() == "level,grade\nL1,0\n"


def test_the_own_folder_is_tidied_at_exit():
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from spinemorph_web.workdir import own_workdir\n"
              "for export in (False, True):\n"
              "    w = own_workdir(); (w / 'exports').mkdir(); (w / 'label.nii.gz').write_bytes(b'x')\n"
              "    if export: (w / 'exports' / 'a.csv').write_text('a')\n"
              "    print(w)")
    done = subprocess.run([sys.executable, "-c", script, str(REPO / "web")], capture_output=True, text=True,
                          check=True)
    plain, exported = (Path(line) for line in done.stdout.split())
    try:
        assert not plain.exists()
        assert [p.name for p in exported.iterdir()] == ["exports"] and (exported / "exports" / "a.csv").exists()
        assert str(exported / "exports") in done.stderr  # the log says where they are
    finally:
        shutil.rmtree(exported, ignore_errors=True)
