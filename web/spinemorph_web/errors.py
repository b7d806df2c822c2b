"""What the page says when something goes wrong: one sentence on what happened and what to do. No trame here."""

from __future__ import annotations

__all__ = ["explain"]


def explain(action: str, err: Exception, url: str = "", image_id: str = "") -> str:
    """Return the message the page shows for ``err`` raised while doing ``action`` ("connect", "submit"...)."""
    from SpineMorphLib.client import ServerError

    if isinstance(err, ServerError):
        if err.status == 0:
            return (f"No SpineMorph server answers at {url or err.url}. Start one (make demo) or correct the address, "
                    "then press Connect.")
        if action in ("open", "next sample") and err.status in (404, 500) and image_id:
            return f"The server has no image {image_id!r}: check the id, or press Next sample. ({err.detail})"
        if action == "submit":
            return f"The server refused the label ({err.status}): {err.detail}. Fix the segments and submit again."
        if err.status in (401, 403):
            return f"The server wants a login ({err.status}): enter your user name and password, then Connect."
        return f"The server could not {action} ({err.status}): {err.detail}"
    return f"Could not {action}: {err}"
