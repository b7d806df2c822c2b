"""The server's front door: every request's ids, names and JSON are checked before MONAI Label's endpoint runs.

MONAI Label's endpoints take an image id and resolve it as a path when such a path exists, parse ``params`` with
``json.loads`` (a 500 on bad JSON) and answer 500 for an unknown model. An app cannot add middleware once the
server runs, but it can wrap the routes it is given: ``install`` replaces each API route by one with the same
path, parameters, role check (RBAC) and OpenAPI entry whose endpoint first checks what the request names:

- ids (``image``, ``id``, ``label``, ``session_id``, and the file name an upload without an id is named after) are
  names, never paths: no '/', '\\', '..', leading '.' or control character, at most ``MAX_ID`` characters (UTF-8
  only; a non-UTF-8 byte arrives as U+FFFD and fails); label tags are letters, digits, '_' and '-';
- models, strategies and scoring methods must be ones this app serves (404 with the list);
- ``params`` and ``info`` form fields are JSON objects of at most ``MAX_JSON`` bytes, and an infer's ``params``
  cannot name the image, label or model (those travel only as ids or uploads);
- uploading or deleting model files through the API needs the admin role (MONAI Label lets an annotator);
- image and label info (and a save's ``params``) cannot set what the server records itself (served times, scores,
  levels): ``{"strategy": "x"}`` would make next-sample fail for everyone until the JSON is mended by hand;
- what MONAI Label's endpoint would answer with a 500 on this server gets a 4xx and a sentence instead (found by
  fuzzing, tests/app/test_fuzz.py, and by reading its endpoints): an image or label the datastore does not have
  (404), an infer with no image (400), with a session while sessions are off (406) or asking DICOM SEG from a
  folder (400), a ``device`` the server lacks (400), a model upload where the task has no model file to replace
  (405), a checksum with an unknown algorithm (400), GPU information without nvidia-smi (404), the whole live log
  (``lines`` < 1, which breaks mid-answer; 400);
- routes for what this app does not serve (whole-slide images, OHIF, the DICOM proxy without DICOMweb, and
  ``/reload``, which rebuilds the app with no role check) are removed, so they are not offered.

An infer runs in a worker thread, at most ``infer_concurrency`` at a time, so the server keeps answering
``/info`` and label saves while a long infer runs.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import shutil
from pathlib import PurePath

import anyio
from fastapi import HTTPException
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException

__all__ = ["install", "check_id", "check_tag", "json_object", "MAX_ID", "MAX_JSON"]

log = logging.getLogger(__name__)
MAX_ID = 200
MAX_JSON = 64 * 1024
# an id names a file of the studies folder without its path: no separator, no leading '.', no control character
# and no U+FFFD (what a byte that is not UTF-8 decodes to); spaces and non-ASCII letters are fine
_ID = re.compile(r"[^./\\\x00-\x1f\x7f\ufffd][^/\\\x00-\x1f\x7f\ufffd]*\Z")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
_ID_PARAMS = ("image", "id", "label", "session_id")  # query parameters that name a stored object
_JSON_FIELDS = ("params", "info")  # form fields that carry a JSON object as text
_RESERVED = {"image", "label", "model", "session", "session_id"}  # an infer's params may not set these
_UNSERVED = ("/infer/wsi", "/ohif")  # MONAI Label features this app does not offer
# image and label info the server writes and reads itself (a client's {"strategy": "x"} would break next-sample
# for everyone, persistently); the datastore's own keys, MONAI Label's active learning, SpineMorph's scoring and saves
_SERVER_INFO = {"ts", "name", "path", "checksum", "strategy", "epistemic_entropy", "epistemic_model_ts",
                "epistemic_ts", "dice", "levels", "previous_version", "morphometry_score", "morphometry_uncertainty",
                "encoder_features"}
_CHECK_SUM = re.compile(r"(?:(?:SHA256|SHA512|MD5):)?[0-9A-Fa-f]{1,128}\Z")


def check_id(value: str, what: str = "image id") -> str:
    """Return ``value`` if it is a valid id; else raise 400 with a sentence saying what an id may hold."""
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"The {what} is empty: send the id the datastore lists.")
    if len(value) > MAX_ID:
        raise HTTPException(400, f"The {what} is {len(value)} characters long; ids have at most {MAX_ID}.")
    if not _ID.match(value) or ".." in value:
        raise HTTPException(400, f"The {what} {value[:80]!r} is not an id: an id is a file's name without its "
                                 "extension (no '/', '\\', '..', leading '.', control characters or bytes that are "
                                 "not UTF-8); send the id the datastore lists.")
    return value


def check_tag(value: str) -> str:
    """Return ``value`` if it is a valid label tag ("final", "original", ...); else raise 400."""
    if not isinstance(value, str) or not _TAG.match(value):
        raise HTTPException(400, f"The label tag {str(value)[:80]!r} is not a tag: tags hold letters, digits, '_' "
                                 "and '-', at most 64 of them (for example 'final').")
    return value


def json_object(text: str | None, field: str) -> dict:
    """Return the JSON object in a form field; 413 if it is larger than MAX_JSON, 400 if it is not an object."""
    if text is None or text == "":
        return {}
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_JSON:
        raise HTTPException(413, f"{field} is {size} bytes; at most {MAX_JSON // 1024} KiB of JSON is accepted.")
    try:
        value = json.loads(text)
    except ValueError as err:
        raise HTTPException(400, f"{field} is not valid JSON ({err}): send a JSON object such as "
                                 '{"stage2": false}.') from None
    if not isinstance(value, dict):
        raise HTTPException(400, f"{field} must be a JSON object (name: value pairs), not {type(value).__name__}.")
    return value


def _known(kind: str, name: str, names) -> None:
    if name not in names:
        offered = ", ".join(sorted(names)) or "none"
        raise HTTPException(404, f"No {kind} named {name[:80]!r} on this server; it offers: {offered}.")


def _is_admin(user) -> bool:
    return not settings.MONAI_LABEL_AUTH_ENABLE or settings.MONAI_LABEL_AUTH_ROLE_ADMIN in (user.roles or [])


class _Checks:
    """What a route's request may name, given the app that serves it."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, path: str, methods: set[str], kwargs: dict) -> None:
        for name in _ID_PARAMS:
            value = kwargs.get(name)
            if isinstance(value, str) and (value or name != "image"):
                if name == "session_id" and not value:
                    continue
                check_id(value, "image id" if name in ("image", "id", "label") else name.replace("_", " "))
        if path.startswith("/datastore") and "PUT" in methods and kwargs.get("file") and not kwargs.get("image"):
            check_id(_upload_id(kwargs["file"]), "image id taken from the file name")  # MONAI Label's fallback
        if isinstance(kwargs.get("tag"), str):
            check_tag(kwargs["tag"])
        for name in _JSON_FIELDS:
            if isinstance(kwargs.get(name), str):
                value = json_object(kwargs[name], name)
                if path.startswith("/infer/") and _RESERVED & set(value):
                    raise HTTPException(400, f"params cannot set {sorted(_RESERVED & set(value))}: name the image "
                                             "with ?image=ID or upload it as file.")
                if path.startswith("/datastore") and _SERVER_INFO & set(value):
                    raise HTTPException(400, f"{name} cannot set {sorted(_SERVER_INFO & set(value))}: the server "
                                             "records these itself (active learning, scoring, saves); keep your own "
                                             "notes under other names.")
                _check_device(value)
        if isinstance(kwargs.get("params"), dict):  # a JSON body (scoring, active learning)
            _check_device(kwargs["params"])
        model = kwargs.get("model")
        if isinstance(model, str):
            if path.startswith(("/infer/", "/batch/infer/")):
                _known("model", model, self.app._infers)
            elif path.startswith("/train/"):
                _known("train task", model, self.app._trainers)
            elif path.startswith("/model/"):
                _known("model", model, set(self.app._infers) | set(self.app._trainers))
        if path.startswith("/activelearning/") and isinstance(kwargs.get("strategy"), str):
            _known("strategy", kwargs["strategy"], self.app._strategies)
        if path.startswith("/scoring/") and isinstance(kwargs.get("method"), str):
            _known("scoring method", kwargs["method"], self.app._scoring_methods)
        if path.startswith("/model/") and methods & {"PUT", "DELETE"} and not _is_admin(kwargs.get("user")):
            raise HTTPException(403, f'Role "{settings.MONAI_LABEL_AUTH_ROLE_ADMIN}" is required to replace or '
                                     "delete a model file; annotators improve models by saving labels.")
        if path.startswith("/model/") and "DELETE" in methods and not getattr(self.app, "allow_delete", False):
            raise HTTPException(403, "This server never deletes model files: start it with "
                                     "`--conf allow_delete true` to allow it.")
        self.answerable(path, methods, kwargs)

    def answerable(self, path: str, methods: set[str], kwargs: dict) -> None:
        """Refuse, with a 4xx and a sentence, what MONAI Label's endpoint would answer with a 500 on this server."""
        if path == "/infer/{model}":
            self.infer_input(kwargs)
        if path == "/model/{model}" and "PUT" in methods and not self.app.model_file(kwargs["model"], validate=False):
            # MONAI Label copies an upload over the infer task's model file; this app's tasks read their weights
            # through their config (bundle or published), so there is no file to replace (its endpoint: 500)
            raise HTTPException(405, f"Model {kwargs['model']!r} takes no uploaded weights: train it "
                                     f"(POST /train/{kwargs['model']}) or start the server with `--conf "
                                     f"{kwargs['model']}_weights PATH`.", headers={"Allow": "GET"})
        if path == "/datastore/image" and isinstance(kwargs.get("check_sum"), str) and kwargs["check_sum"] \
                and not _CHECK_SUM.match(kwargs["check_sum"]):  # an unknown algorithm: ValueError, a 500
            raise HTTPException(400, f"check_sum {kwargs['check_sum'][:80]!r} is not a checksum: send "
                                     "ALGORITHM:HEXDIGEST with SHA256, SHA512 or MD5 (as GET /datastore/ lists).")
        if path == "/logs/gpu" and shutil.which("nvidia-smi") is None:  # MONAI Label runs it unchecked: a 500
            raise HTTPException(404, "This server has no NVIDIA GPU tools (nvidia-smi is not installed): it runs "
                                     "on the CPU, so there is no GPU information to show.")
        if path == "/logs/" and isinstance(kwargs.get("lines"), int) and kwargs["lines"] < 1:
            # lines <= 0 streams the whole log while the server keeps appending to it: the body outgrows the
            # Content-Length sent first, and the connection breaks mid-answer
            raise HTTPException(400, f"lines is {kwargs['lines']}: ask for the last N lines with lines=N (N >= 1, "
                                     "for example lines=300).")

    def infer_input(self, kwargs: dict) -> None:
        """Refuse an infer with no image, a session while sessions are off, or DICOM SEG output without DICOMweb."""
        if not kwargs.get("image") and not kwargs.get("file") and not kwargs.get("session_id"):
            raise HTTPException(400, "No image to infer on: name it with ?image=ID (an id the datastore lists) or "
                                     "upload it as file.")
        if kwargs.get("session_id") and self.app.sessions() is None:
            raise HTTPException(406, "Sessions are off on this server (MONAI_LABEL_SESSIONS=false): name the image "
                                     "with ?image=ID or upload it as file.")
        output = getattr(kwargs.get("output"), "value", kwargs.get("output"))
        if output == "dicom_seg" and not self.app.studies.startswith("http"):
            raise HTTPException(400, "output=dicom_seg needs studies on a DICOMweb server; this server reads a "
                                     "folder: ask for output=image, json or all.")


def _upload_id(file) -> str:
    """Return the id MONAI Label gives an uploaded image sent without one: its file name less the extensions."""
    name = getattr(file, "filename", None) or ""
    return os.path.basename(name).replace("".join(PurePath(name).suffixes) if name else ".nii.gz", "")


def _check_device(params: dict) -> None:
    """Refuse a ``device`` this server cannot run on: torch would fail inside the task (a 500)."""
    device = params.get("device")
    if device is None or device in ("cpu", "cuda"):  # "cuda" means the CPU where there is no GPU
        return
    import torch

    gpus = torch.cuda.device_count()
    if not (isinstance(device, str) and re.fullmatch(r"cuda:\d{1,3}", device) and int(device[5:]) < gpus):
        raise HTTPException(400, f"device {str(device)[:40]!r} is not one this server has ({gpus} GPUs): send "
                                 '"cpu", or "cuda" for the first GPU (the CPU where there is none).')


def _route_kwargs(route: APIRoute) -> dict:
    """The arguments that rebuild ``route`` as it is (whatever this FastAPI's APIRoute takes), but its endpoint."""
    names = [n for n in inspect.signature(APIRoute.__init__).parameters if n not in ("self", "path", "endpoint")]
    return {n: getattr(route, n) for n in names if hasattr(route, n)}


def _guarded(route: APIRoute, path: str, checks: _Checks, limiter: anyio.CapacityLimiter) -> APIRoute:
    endpoint = route.endpoint
    is_infer = path == "/infer/{model}" and "POST" in route.methods

    @functools.wraps(endpoint)
    async def guarded(**kwargs):
        checks(path, route.methods, kwargs)
        if is_infer:  # MONAI Label's endpoint runs the infer on the event loop; run it in a worker instead
            from monailabel.endpoints.infer import run_inference

            args = {k: v for k, v in kwargs.items() if k != "user"}
            call = anyio.to_thread.run_sync(functools.partial(run_inference, **args), limiter=limiter)
        else:
            call = endpoint(**kwargs)
        try:
            return await call
        except (ImageNotFoundException, LabelNotFoundException) as err:  # MONAI Label's datastore: else a 500
            raise HTTPException(404, f"{err.msg}: send an image id (and label tag) that GET /datastore/?output=all "
                                     "lists.") from None

    return APIRoute(route.path, guarded, **_route_kwargs(route))


def _routers(router, prefix: str = ""):
    """Yield ``(router, prefix)`` for ``router`` and every router included in it, however deep.

    FastAPI before 0.16x copies an included router's routes into the app's list; later versions keep one
    ``_IncludedRouter`` entry per ``include_router`` that resolves the original router's routes at request time, so
    the routes to guard live in ``original_router.routes`` (paths without the include's prefix).
    """
    yield router, prefix
    for route in router.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routers(inner, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))


def install(fastapi_app, app, infer_concurrency: int = 2) -> int:
    """Guard every API route of ``fastapi_app`` (MONAI Label's) for the SpineMorph ``app``; return how many."""
    checks, limiter = _Checks(app), anyio.CapacityLimiter(max(1, infer_concurrency))
    # /reload would rebuild the app (dropping its guard) for anyone, with no role check; the DICOM proxy only means
    # something when the studies are a DICOMweb server
    unserved = (*_UNSERVED, "/reload", *(() if app.studies.startswith("http") else ("/proxy",)))
    count = 0
    for router, prefix in _routers(fastapi_app.router):
        routes = []
        for route in router.routes:
            if isinstance(route, APIRoute) and (prefix + route.path).startswith(unserved):
                continue
            if isinstance(route, APIRoute):
                route, count = _guarded(route, prefix + route.path, checks, limiter), count + 1
            routes.append(route)
        router.routes[:] = routes
        if hasattr(router, "_mark_routes_changed"):
            router._mark_routes_changed()
    fastapi_app.openapi_schema = None
    log.info("Guarded %d routes", count)
    return count
