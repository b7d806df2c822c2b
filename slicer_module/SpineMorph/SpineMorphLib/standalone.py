"""Stand-ins for Slicer's scripted-module base classes when only PyPI's ``slicer-core`` is installed.

``slicer-core`` has the MRML classes but no ``slicer.ScriptedLoadableModule`` (it needs Qt). These stand-ins let
``SpineMorph.py`` import there, so that its Logic and its Test run on real MRML nodes outside the application.
"""

from __future__ import annotations

import logging
import unittest

__all__ = [
    "ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
    "ScriptedLoadableModuleTest", "parameterNodeWrapper",
]

log = logging.getLogger(__name__)


class ScriptedLoadableModule:
    """Keeps the module description; there is no application to register it with."""

    def __init__(self, parent) -> None:
        self.parent = parent


class ScriptedLoadableModuleWidget:
    """A widget base that exists only so that the module file imports; it cannot be set up without Qt."""

    def __init__(self, parent=None) -> None:
        self.parent = parent


class ScriptedLoadableModuleLogic:
    """Derives the module name from the class name, as Slicer's base does."""

    def __init__(self, parent=None) -> None:
        super().__init__()
        self.moduleName = self.__class__.__name__.removesuffix("Logic")


class ScriptedLoadableModuleTest(unittest.TestCase):
    """A TestCase whose ``delayDisplay`` logs instead of showing a message box."""

    def delayDisplay(self, message, requestedDelay=None, msec=None) -> None:
        """Log ``message`` (the application shows it for a moment)."""
        log.info("%s", message)


def parameterNodeWrapper(cls):
    """Return ``cls`` unchanged: without the application there is no GUI to bind parameters to."""
    return cls
