"""The server's front door: every request's ids, names and JSON are checked before MONAI Label's endpoint runs.

MONAI Label's endpoints take an image id and resolve it as a path when such a path exists, parse ``params`` with
``json.loads`` (a 500 on bad JSON) and answer 500 for an unknown model. An app cannot add middleware once the
server runs, but it can wrap the routes it is given: ``install`` replaces each API route by one with the same
path, parameters, role check (RBAC) and OpenAPI entry whose endpoint first checks what the request names:

- ids (``image``, ``id``, ``label``, ``session_id``) and label tags are ids, never paths: letters, digits and
  ``._-``, no ``..``, at most ``MAX_ID`` characters (UTF-8 only; a non-UTF-8 byte arrives as U+FFFD and fails);
- models, strategies and scoring methods must be ones this app serves (404 with the list);
- ``params`` and ``info`` form fields are JSON objects of at most ``MAX_JSON`` bytes, and an infer's ``params``
  cannot name the image, label or model (those travel only as ids or uploads);
- uploading or deleting model files through the API needs the admin role (MONAI Label lets an annotator);
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
import re

import anyio
from fastapi import HTTPException
from fastapi.routing import APIRoute
from monailabel.config import settings

__all__ = ["install", "check_id", "check_tag", "json_object", "MAX_ID", "MAX_JSON"]

log = logging.getLogger(__name__)
MAX_ID = 200
MAX_JSON = 64 * 1024
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
_ID_PARAMS = ("image", "id", "label", "session_id")  # query parameters that name a stored object
_JSON_FIELDS = ("params", "info")  # form fields that carry a JSON object as text
_RESERVED = {"image", "label", "model", "session", "session_id"}  # an infer's params may not set these
_UNSERVED = ("/infer/wsi", "/ohif")  # MONAI Label features this app does not offer


def check_id(value: str, what: str = "image id") -> str:
    """Return ``value`` if it is a valid id; else raise 400 with a sentence saying what an id may hold."""
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"The {what} is empty: send the id the datastore lists.")
    if len(value) > MAX_ID:
        raise HTTPException(400, f"The {what} is {len(value)} characters long; ids have at most {MAX_ID}.")
    if not _ID.match(value) or ".." in value:
        raise HTTPException(400, f"The {what} {value[:80]!r} is not an id: ids hold letters, digits, '.', '_' and "
                                 "'-' (no paths, no '..'); send the id the datastore lists.")
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
        if isinstance(kwargs.get("tag"), str):
            check_tag(kwargs["tag"])
        for name in _JSON_FIELDS:
            if isinstance(kwargs.get(name), str):
                value = json_object(kwargs[name], name)
                if path.startswith("/infer/") and _RESERVED & set(value):
                    raise HTTPException(400, f"params cannot set {sorted(_RESERVED & set(value))}: name the image "
                                             "with ?image=ID or upload it as file.")
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
            return await anyio.to_thread.run_sync(functools.partial(run_inference, **args), limiter=limiter)
        return await endpoint(**kwargs)

    guarded.spinemorph_guarded = True
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
