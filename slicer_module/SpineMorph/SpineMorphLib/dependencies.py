"""Make ``spinemorph`` and its few dependencies importable in Slicer's Python, installing what is missing.

Standard library only: this runs before anything else of the module can be imported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["REQUIREMENTS", "repository_lib", "use_repository_lib", "missing_requirements", "ensure_dependencies"]

log = logging.getLogger(__name__)

#: Import name -> pip requirement of what ``spinemorph``'s measurement, IO and overlay code needs.
REQUIREMENTS: dict[str, str] = {
    "numpy": "numpy", "scipy": "scipy", "nibabel": "nibabel", "pydicom": "pydicom", "PIL": "pillow",
    "tqdm": "tqdm", "requests": "requests",
}
#: Where to pip-install spinemorph from when the module does not sit in the SpineMorph repository.
SPINEMORPH_ENV = "SPINEMORPH_REQUIREMENT"


def repository_lib(module_file: str | Path = __file__) -> Path | None:
    """Return the repository's ``lib/`` folder when this module sits in a SpineMorph checkout, else None."""
    for parent in Path(module_file).resolve().parents:
        lib = parent / "lib"
        if (lib / "spinemorph" / "__init__.py").is_file() and (parent / "slicer_module").is_dir():
            return lib
    return None


def use_repository_lib() -> Path | None:
    """Put the repository's ``lib/`` first on sys.path when the module sits in a checkout; return it, else None."""
    lib = repository_lib()
    if lib is not None and str(lib) not in sys.path and importlib.util.find_spec("spinemorph") is None:
        sys.path.insert(0, str(lib))
        log.info("SpineMorph: using spinemorph from %s", lib)
    return lib


def missing_requirements() -> list[str]:
    """Return the pip requirements of the third-party packages that cannot be imported."""
    return [req for name, req in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]


def ensure_dependencies(install: Callable[[str], object] | None = None) -> None:
    """Make ``import spinemorph`` work, calling ``install`` (``slicer.util.pip_install``) for what is missing.

    ``spinemorph`` comes from the repository's ``lib/`` when the module sits in a checkout, else from the pip
    requirement in the ``SPINEMORPH_REQUIREMENT`` environment variable (a path, wheel or URL). Raises ImportError
    with what to do when something stays missing.
    """
    use_repository_lib()
    missing = missing_requirements()
    if importlib.util.find_spec("spinemorph") is None and os.environ.get(SPINEMORPH_ENV):
        missing.append(os.environ[SPINEMORPH_ENV])
    if missing and install is not None:
        log.info("SpineMorph: installing %s", " ".join(missing))
        install(" ".join(missing))
        importlib.invalidate_caches()
    still = missing_requirements()
    if importlib.util.find_spec("spinemorph") is None:
        still.append("spinemorph")
    if still:
        raise ImportError(f"SpineMorph needs {', '.join(still)}. Install them in Slicer's Python console with "
                          f"slicer.util.pip_install('{' '.join(still)}'); for spinemorph, keep the module in its "
                          f"repository (it uses lib/ from there) or set {SPINEMORPH_ENV} to a path or wheel.")
