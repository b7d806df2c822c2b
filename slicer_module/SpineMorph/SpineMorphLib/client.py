"""A small client for the SpineMorph MONAI Label server: standard library and ``requests`` only.

It runs in Slicer's own Python, not in the server's environment, so it does not import monailabel. It covers the
calls the module makes: info, next sample, image download, infer, save label (with the annotator's seconds), and
train start, status and stop; ``progress_sentence`` says in one line how far the labelling is.
"""

from __future__ import annotations

import json
import logging
import re
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from urllib.parse import quote

import requests

__all__ = ["SpineMorphClient", "ServerError", "parse_multipart", "progress_sentence", "ANNOTATION_SECONDS"]

log = logging.getLogger(__name__)

ANNOTATION_SECONDS = "annotation_seconds"  # the saved label's info: the annotator's seconds on the image
_FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)


class ServerError(RuntimeError):
    """Raised when the server answers with an error; ``detail`` is the server's own sentence."""

    def __init__(self, status: int, detail: str, url: str = "") -> None:
        super().__init__(f"The server answered {status} to {url}: {detail}" if url else f"{status}: {detail}")
        self.status, self.detail, self.url = status, detail, url


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Return the (fields, files) of a multipart body: field texts by name, file bytes by file name."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError(f"Expected a multipart answer, got {content_type!r}.")
    fields, files = {}, {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            files[filename] = payload
        else:
            fields[part.get_param("name", header="content-disposition")] = payload.decode("utf-8")
    return fields, files


def progress_sentence(progress: dict | None) -> str:
    """Return one line from /info's "progress": labels done and left and the last training's best validation Dice
    ("" when the server reports none)."""
    if not isinstance(progress, dict) or "labelled" not in progress:
        return ""
    text = f"{progress['labelled']} of {progress.get('total', '?')} images labelled, {progress.get('left', '?')} left"
    last = progress.get("last_training")
    if isinstance(last, dict) and isinstance(last.get("score"), (int, float)):
        text += f"; last training ({last.get('model', '?')}): best validation Dice {last['score']:.2f}"
    else:
        text += "; no training yet"
    return text + "."


class SpineMorphClient:
    """Calls a MONAI Label server running the SpineMorph app.

    Example::

        client = SpineMorphClient("http://127.0.0.1:8000")
        sample = client.next_sample("random")
        label_file, result = client.infer("spinemorph_levels", sample["id"], folder)
    """

    def __init__(self, url: str, timeout: float = 120.0, token: str | None = None) -> None:
        url = (url or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"The server address must start with http:// or https://, not {url!r}.")
        self.url, self.timeout, self.token = url, timeout, token or None

    def login(self, username: str, password: str) -> str:
        """Get an access token from the server's login (MONAI Label's /auth/token, which asks its Keycloak realm)
        and send it with every later call, as ``Authorization: Bearer``; return it. The password is not kept."""
        answer = self._call("POST", "/auth/token", data={"username": username, "password": password}).json()
        if not answer.get("access_token"):
            raise ServerError(400, "this server has no login (MONAI_LABEL_AUTH_ENABLE is off); connect without "
                                   "a user name", f"{self.url}/auth/token")
        self.token = answer["access_token"]
        return self.token

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        url = f"{self.url}{path}"
        if self.token:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {self.token}"}
        try:
            response = requests.request(method, url, timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        except requests.ConnectionError as err:
            raise ServerError(0, f"no server answers at {self.url} ({err.__class__.__name__}); is it running?",
                              url) from None
        if not response.ok:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServerError(response.status_code, str(detail)[:2000], url)
        return response

    def info(self) -> dict:
        """Return the server's /info/: models, strategies, trainers, labels."""
        return self._call("GET", "/info/").json()

    def next_sample(self, strategy: str, params: dict | None = None) -> dict:
        """Return the next image to annotate by ``strategy``: its "id" and server "path"."""
        return self._call("POST", f"/activelearning/{quote(strategy, safe='')}", json=params or {}).json()

    def download_image(self, image_id: str, folder: str | Path, name: str | None = None) -> Path:
        """Download an image into ``folder`` and return its path (named as on the server)."""
        response = self._call("GET", "/datastore/image", params={"image": image_id})
        found = _FILENAME.search(response.headers.get("content-disposition", ""))
        path = Path(folder) / Path(name or (found.group(1) if found else image_id)).name
        path.write_bytes(response.content)
        return path

    def infer(self, model: str, image_id: str, folder: str | Path, params: dict | None = None) -> tuple[Path, dict]:
        """Run ``model`` on an image; return the label file written into ``folder`` and the result JSON."""
        response = self._call("POST", f"/infer/{quote(model, safe='')}", params={"image": image_id},
                              files={"params": (None, json.dumps(params or {}))})
        fields, files = parse_multipart(response.headers.get("content-type", ""), response.content)
        if not files:
            raise ServerError(response.status_code, "the answer holds no label file", f"{self.url}/infer/{model}")
        name, data = next(iter(files.items()))
        suffix = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
        path = Path(folder) / f"{image_id}-{model}{suffix}"
        path.write_bytes(data)
        return path, json.loads(fields.get("params") or "{}")

    def save_label(self, image_id: str, label_file: str | Path, tag: str = "final", info: dict | None = None,
                   seconds: float | None = None) -> dict:
        """Store a label file for an image under ``tag``, with ``info`` (and the annotator's ``seconds`` on it, as
        ``annotation_seconds``); return the server's answer."""
        if seconds is not None:
            info = {**(info or {}), ANNOTATION_SECONDS: round(float(seconds), 1)}
        with open(label_file, "rb") as fh:
            files = {"label": (Path(label_file).name, fh), "params": (None, json.dumps(info or {}))}
            return self._call("PUT", "/datastore/label", params={"image": image_id, "tag": tag}, files=files).json()

    def train_start(self, model: str, params: dict | None = None) -> dict:
        """Start training ``model`` with ``params`` (max_epochs, batch_size...); return the server's answer."""
        return self._call("POST", f"/train/{quote(model, safe='')}", json=params or {}).json()

    def train_status(self) -> dict | None:
        """Return the last training job's status and output lines, or None when none has run."""
        try:
            return self._call("GET", "/train/", timeout=10).json()
        except ServerError as err:
            if err.status == 404:
                return None
            raise

    def train_stop(self) -> dict:
        """Stop the running training job; return the server's answer."""
        return self._call("DELETE", "/train/").json()
