"""Request options as the tasks read them: a form sends text, a JSON body sends values."""

from __future__ import annotations

__all__ = ["as_bool"]


def as_bool(value) -> bool:
    """Return a request option as a bool: JSON booleans, and "false"/"0"/"no"/"" from a form as False."""
    return value if isinstance(value, bool) else str(value).strip().lower() not in ("false", "0", "no", "")
