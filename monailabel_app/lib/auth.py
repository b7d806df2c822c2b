"""MONAI Label's token check, made to run with the PyJWT it requires.

MONAI Label 0.8.5 (``monailabel.endpoints.user.auth.from_token``) calls ``jwt.decode(token, key, options=...)``
without ``algorithms``. PyJWT 2 (monailabel requires ``pyjwt>=2.8``) refuses every such call ("It is required
that you pass in a value for the algorithms argument"), so with ``MONAI_LABEL_AUTH_ENABLE=true`` every token, valid
or not, gets 401 and no one can use the server. ``use_asymmetric_algorithms`` replaces ``from_token`` with the same
check plus ``algorithms``: the realm's public key (fetched by MONAI Label's own ``get_public_key``), a verified
signature and expiry, and the same settings for the user name, e-mail and roles. Only public-key algorithms are
accepted, so a token signed with the public key as an HMAC secret is refused.
"""

from __future__ import annotations

import functools
import logging

import jwt
import requests
from fastapi import HTTPException
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.endpoints.user import auth

__all__ = ["ALGORITHMS", "from_token", "use_asymmetric_algorithms", "guard_login"]

log = logging.getLogger(__name__)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


def from_token(token: str) -> auth.User:
    """Return the user a realm-signed token names; raise jwt.InvalidTokenError if the token does not verify."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return auth.DEFAULT_USER
    try:
        key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    except (requests.RequestException, KeyError, ValueError) as err:
        raise HTTPException(503, f"The login realm {settings.MONAI_LABEL_AUTH_REALM_URI} gave no public key "
                                 f"({err}); check MONAI_LABEL_AUTH_REALM_URI and that the realm is up.") from None
    payload = jwt.decode(token, key, algorithms=ALGORITHMS,
                         options={"verify_signature": True, "verify_aud": False, "verify_exp": True})
    roles = payload
    for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):  # "realm_access#roles": a nested claim
        roles = roles.get(part) if isinstance(roles, dict) else None
    return auth.User(username=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or "",
                     email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
                     name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
                     roles=list(roles) if isinstance(roles, list) else [])


def use_asymmetric_algorithms() -> None:
    """Make MONAI Label's ``get_current_user`` verify tokens with ``from_token`` above (when auth is enabled)."""
    if settings.MONAI_LABEL_AUTH_ENABLE and auth.from_token is not from_token:
        auth.from_token = from_token
        log.info("Token check: realm %s, algorithms %s", settings.MONAI_LABEL_AUTH_REALM_URI, ", ".join(ALGORITHMS))


def guard_login(fastapi_app) -> None:
    """Make ``POST /auth/token`` answer 401 for a refused user name or password and 503 for an unreachable realm
    (MONAI Label lets the realm's refusal escape as a 500)."""
    from lib.guard import _routers

    for router, prefix in _routers(fastapi_app.router):
        for i, route in enumerate(router.routes):
            if isinstance(route, APIRoute) and prefix + route.path == "/auth/token":
                router.routes[i] = _login_route(route)
                if hasattr(router, "_mark_routes_changed"):
                    router._mark_routes_changed()


def _login_route(route: APIRoute) -> APIRoute:
    from lib.guard import _route_kwargs

    endpoint = route.endpoint

    @functools.wraps(endpoint)
    async def login(**kwargs):
        try:
            return await endpoint(**kwargs)
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else 0
            if code in (400, 401, 403):
                raise HTTPException(401, "The login realm refused this user name and password; check them, or "
                                         "ask the realm's administrator.") from None
            raise HTTPException(503, f"The login realm answered {code}; try again later.") from None
        except requests.RequestException as err:
            raise HTTPException(503, f"The login realm cannot be reached ({err.__class__.__name__}); check "
                                     "MONAI_LABEL_AUTH_REALM_URI.") from None

    return APIRoute(route.path, login, **_route_kwargs(route))
