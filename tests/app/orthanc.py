"""Start and stop a real Orthanc PACS, with its DICOMweb plugin, on free local ports: a test's own, never the system's.

Orthanc comes from Debian (``apt-get install orthanc orthanc-dicomweb``; ``make orthanc`` does it). The package
also starts a system service on ports 8042/4242; these tests neither need nor touch it: each run starts its own
Orthanc with its own configuration and a temporary storage folder, and stops it at the end. Where Orthanc or its
plugin is not installed, the tests that use it skip and say how to install it; nothing fakes a server.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from tests.app.server import free_port, wait_until_answering

__all__ = ["Orthanc", "find_orthanc", "running_orthanc", "store"]

INSTALL = "install it with `make orthanc` (or `apt-get install orthanc orthanc-dicomweb`)"
# where Debian's orthanc-dicomweb puts the plugin, and where other builds of it tend to go
PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                "/usr/lib/*/orthanc/libOrthancDicomWeb.so*", "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
                "/usr/local/lib/orthanc/libOrthancDicomWeb.so*")
SBIN = ("/usr/sbin", "/usr/local/sbin")  # Debian's Orthanc is in /usr/sbin, which a user's PATH may lack


@dataclass(frozen=True)
class Orthanc:
    """A started Orthanc: its REST root, its DICOMweb root, its DICOM port and its log."""

    url: str
    dicomweb: str
    dicom_port: int
    log: Path


def find_orthanc() -> tuple[str, str]:
    """Return (the Orthanc executable, the DICOMweb plugin); raise FileNotFoundError saying what is missing."""
    exe = shutil.which("Orthanc") or shutil.which("Orthanc", path=os.pathsep.join(SBIN))
    if exe is None:
        raise FileNotFoundError(f"Orthanc is not installed (no `Orthanc` on PATH or in /usr/sbin): {INSTALL}.")
    plugins = sorted(p for pattern in PLUGIN_GLOBS for p in glob.glob(pattern) if os.path.isfile(p))
    if not plugins:
        raise FileNotFoundError(f"Orthanc's DICOMweb plugin (libOrthancDicomWeb.so) is not installed: {INSTALL}.")
    return exe, plugins[0]


def _config(storage: Path, http_port: int, dicom_port: int, plugin: str) -> dict:
    """Return a configuration that serves DICOMweb to this machine only, without authentication."""
    return {
        "Name": "SpineMorphTests", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "StorageCompression": False, "Plugins": [plugin],
        "HttpServerEnabled": True, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "OrthancExplorerEnabled": False, "WebDavEnabled": False,
        "DicomServerEnabled": True, "DicomPort": dicom_port, "DicomAet": "SPINEMORPHTEST",
        "DicomAlwaysAllowStore": False, "HttpThreadsCount": 8, "ConcurrentJobs": 1, "SaveJobs": False,
        "MetricsEnabled": False, "MallocArenaMax": 2,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
    }


@contextmanager
def running_orthanc(timeout: float = 30.0):
    """Yield an Orthanc started on 127.0.0.1 (free HTTP and DICOM ports) with a temporary storage folder and the
    DICOMweb plugin, once its DICOMweb answers; stop it afterwards. Skip the test when Orthanc is not installed."""
    try:
        exe, plugin = find_orthanc()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    with tempfile.TemporaryDirectory(prefix="spinemorph-orthanc-") as tmp:
        root = Path(tmp)
        http_port, dicom_port = free_port(), free_port()
        while dicom_port == http_port:
            dicom_port = free_port()
        config = root / "orthanc.json"
        config.write_text(json.dumps(_config(root / "storage", http_port, dicom_port, plugin), indent=1))
        log = root / "orthanc.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([exe, "--no-jobs", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                    cwd=root, start_new_session=True)
        url = f"http://127.0.0.1:{http_port}"
        try:
            wait_until_answering(proc, f"{url}/dicom-web/studies", log, "Orthanc", timeout)
            yield Orthanc(url, f"{url}/dicom-web", dicom_port, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def store(orthanc: Orthanc, datasets: list[Dataset]) -> None:
    """Store ``datasets`` in ``orthanc`` with STOW-RS, as a modality or another PACS would; fail on any refusal."""
    answer = DICOMwebClient(orthanc.dicomweb).store_instances(datasets)
    failed = answer.get("FailedSOPSequence", [])
    assert not failed, f"Orthanc refused {len(failed)} of {len(datasets)} instances: {failed}"
