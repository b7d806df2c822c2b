"""The trame app: page state, what each button does, and the training poll that never blocks the page."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
from pathlib import Path

from trame.app import get_server
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from spinemorph_web.errors import explain
from spinemorph_web.session import WebSession
from spinemorph_web.ui import build_page
from spinemorph_web.workdir import own_workdir

__all__ = ["SpineMorphWebApp", "main"]

log = logging.getLogger(__name__)
FILM_LAYOUT = "film"


def _film_layout() -> Layout:
    """Return a 2D-only layout: one view of the film's plane (3D rendering fails on films over 2048 px)."""
    return Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.axial_view()])


class SpineMorphWebApp:
    """One page of the annotation loop on a trame server."""

    def __init__(self, server_url: str = "", workdir: str | None = None, server=None) -> None:
        self.server = server or get_server(client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server, slice_view_ui_f=lambda *_: None,
                               rca_encoder="png")
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout(FILM_LAYOUT, _film_layout())
        self.layout_manager.set_layout(FILM_LAYOUT)
        self.session = WebSession(self.slicer, workdir or own_workdir())  # own_workdir: cleared at exit
        exports = Path(self.session.logic.workdir) / "exports"  # where session.export writes
        exports.mkdir(parents=True, exist_ok=True)
        self.server.serve["exports"] = str(exports)  # the page's downloads: http://HOST:PORT/exports/NAME
        self.session.undo_stack.can_undo_changed.connect(self._on_undo_changed)
        self.slicer.segmentation_editor.segmentation_modified.connect(self._on_segmentation_modified)
        self.state.update({
            "trame__title": "SpineMorph", "server_url": server_url, "username": "", "password": "",
            "connected": False, "server_name": "", "strategies": [], "strategy": None, "models": [],
            "model": None, "wanted_image": "", "image_id": "", "levels": [], "level": None, "level_px": 0,
            "tool": "none", "can_undo": False, "headers": [], "rows": [], "error": "", "message": "",
            "busy": False, "epochs": 2, "training": False, "train_percent": 0, "train_text": "", "exported": "",
            "export_url": "", "export_name": "",
        })
        for name in ("connect", "next_sample", "open_image", "auto_segment", "undo", "measure", "flip_facing",
                     "shift_levels", "submit", "train", "export"):
            setattr(self.ctrl, name, getattr(self, f"on_{name}"))
        self.state.change("level")(self._on_level)
        self.state.change("tool")(self._on_tool)
        self.ui = build_page(self.server, self.layout_manager, self.ctrl)

    @property
    def state(self):
        return self.server.state

    @property
    def ctrl(self):
        return self.server.controller

    # What the buttons do. Each one runs through _action: errors become a sentence in the page.
    def _action(name: str):  # noqa: N805  (a decorator used in the class body)
        def wrap(method):
            @functools.wraps(method)
            def run(self, *args, **kwargs):
                self.state.error, self.state.message = "", ""
                try:
                    return method(self, *args, **kwargs)
                except Exception as err:
                    log.warning("SpineMorph web: %s failed", name, exc_info=True)
                    self.state.error = explain(name, err, self.state.server_url, self.state.wanted_image)
                finally:
                    self.state.flush()
            return run
        return wrap

    def _typed(self, **fields) -> None:
        """Take what the page's fields showed when the button was pressed: a click can reach us before the
        field's last keystrokes do, so the buttons send the fields' values with the click."""
        self.state.update({name: value for name, value in fields.items() if value is not None})

    @_action("connect")
    def on_connect(self, url: str | None = None, username: str | None = None, password: str | None = None) -> None:
        self._typed(server_url=url, username=username, password=password)
        info = self.session.connect(self.state.server_url, self.state.username, self.state.password)
        self.state.password = ""
        strategies, models = info["strategies"], info["models"]
        self.state.update({
            "connected": True, "server_name": f"Connected to {info['name']}: {len(models)} model(s)",
            "strategies": strategies, "models": models,
            "strategy": "random" if "random" in strategies else (strategies or [None])[0],
            "model": models[0] if models else None,
        })

    @_action("next sample")
    def on_next_sample(self, strategy: str | None = None) -> None:
        self._typed(strategy=strategy)
        self._shown(self.session.next_sample(self.state.strategy))

    @_action("open")
    def on_open_image(self, wanted: str | None = None) -> None:
        self._typed(wanted_image=wanted)
        wanted = (self.state.wanted_image or "").strip()
        if not wanted:
            raise ValueError("type an image id first")
        self._shown(self.session.load_sample(wanted))

    def _shown(self, image_id: str) -> None:
        self.state.update({"image_id": image_id, "levels": [], "level": None, "rows": [], "headers": [],
                           "tool": "none", "can_undo": False, "exported": "", "export_url": "", "export_name": ""})

    @_action("auto-segment")
    def on_auto_segment(self, model: str | None = None) -> None:
        self._typed(model=model)
        levels = self.session.auto_segment(self.state.model)
        self.state.update({"levels": levels, "level": levels[len(levels) // 2] if levels else None,
                           "tool": "none", "rows": [], "headers": [], "can_undo": False})
        self.state.message = f"{len(levels)} levels: {', '.join(levels)}" if levels else "The model found no body."
        self._refresh_count()

    def _on_level(self, level, **_) -> None:
        if level and self.session.segmentation is not None:
            self.session.set_level(level)
            self._refresh_count()

    def _on_tool(self, tool, **_) -> None:
        try:
            self.session.set_tool(tool or "none")
        except ValueError as err:
            self.state.error = str(err)

    def _on_segmentation_modified(self, *_) -> None:
        self._refresh_count()
        self.state.can_undo = self.session.undo_stack.can_undo()
        self.state.flush()

    def _on_undo_changed(self, *_) -> None:
        self.state.can_undo = self.session.undo_stack.can_undo()

    def _refresh_count(self) -> None:
        level = self.state.level
        self.state.level_px = self.session.pixel_count(level) if level in self.session.levels() else 0

    @_action("undo")
    def on_undo(self) -> None:
        self.session.undo()
        self._on_segmentation_modified()

    @_action("measure")
    def on_measure(self) -> None:
        from SpineMorphLib.records import flag_words
        from SpineMorphLib.report import result_summary

        headers, rows, colours = self.session.measure()
        self.state.headers = headers
        flags = headers.index("Flags")
        # each row's flags in words, the Flags cell's tooltip as in Slicer
        self.state.rows = [{"cells": row, "color": "rgb({},{},{})".format(*c),
                            "why": flag_words(row[flags])}
                           for row, c in zip(rows, colours, strict=True)]
        # the line Slicer shows under its table: the facing and its source, whether anything was graded, the naming
        self.state.message = result_summary(self.session.logic.measurement.result)

    @_action("flip facing")
    def on_flip_facing(self) -> None:
        facing = self.session.flip_facing()
        if self.session.segmentation is not None:
            self.on_measure()  # an action of its own: it clears the message, so the message comes after
        self.state.message = f"Facing set to {facing}."

    @_action("shift levels")
    def on_shift_levels(self, steps: int) -> None:
        levels = self.session.shift_levels(int(steps))
        self.state.update({"levels": levels, "level": levels[len(levels) // 2] if levels else None})
        self.on_measure()
        self.state.message = f"Levels now {', '.join(levels)}."

    @_action("submit")
    def on_submit(self) -> None:
        image_id = self.session.submit()
        self.state.message = f"Label of {image_id} saved on the server."

    @_action("train")
    def on_train(self) -> None:
        if self.state.training:
            self.session.logic.stopTraining()
            return
        self.state.update({"training": True, "train_percent": 0, "train_text": "starting"})
        asyncio.get_event_loop().create_task(self._train(self.state.model, int(self.state.epochs or 1)))

    async def _train(self, model: str, epochs: int) -> None:
        """Start the job off the page's thread, then poll it every second (each poll returns at once: a worker
        thread asks the server), so the page never waits on the server."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.session.logic.startTraining, model, epochs, 2)
        except Exception as err:
            with self.state:
                self.state.training, self.state.train_text = False, ""
                self.state.error = explain("train", err, self.state.server_url)
            return
        while True:
            progress = self.session.logic.pollTraining()
            with self.state:
                self.state.train_percent = round(100 * progress.fraction)
                self.state.train_text = f"{progress.status.lower()}: {progress.message}"
                self.state.training = not progress.finished
            if progress.finished:
                return
            await asyncio.sleep(1.0)

    @_action("export")
    def on_export(self, kind: str) -> None:
        path = self.session.export(kind)
        # a link the browser downloads, wherever the page runs (the path is on the page's machine)
        self.state.update({"exported": f"Written {path}", "export_name": path.name,
                           "export_url": f"exports/{path.name}?v={path.stat().st_mtime_ns}"})


def main(argv: list[str] | None = None) -> None:
    """Serve the page: ``--server`` is the SpineMorph MONAI Label server, ``--port`` the page's own port."""
    parser = argparse.ArgumentParser(prog="spinemorph web", description=__doc__)
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="SpineMorph server address")
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on")
    parser.add_argument("--port", type=int, default=8080, help="port the page listens on")
    parser.add_argument("--workdir", default=None,
                        help="folder for downloads, labels and exports, which stays (default: a temporary one, "
                             "removed at exit but for its exports)")
    parser.add_argument("--connect", action="store_true", help="connect to --server at start")
    args, _ = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("spinemorph_web").setLevel(logging.INFO)
    app = SpineMorphWebApp(args.server, args.workdir)
    if args.connect:
        app.on_connect()
    app.server.start(host=args.host, port=args.port, open_browser=False)
