"""SpineMorph in the browser: the Slicer module's Logic on trame-slicer's MRML scene, views and segment editor.

Runs in its own venv (``.venv-web``: trame-slicer, slicer-core, vtk, numpy 2), never in the server's. Started by
``spinemorph web`` or ``python -m spinemorph_web`` with ``web/`` on the path.
"""
