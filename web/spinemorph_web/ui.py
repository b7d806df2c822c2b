"""The page: the loop's controls in a drawer, the film in a 2D Slicer view, the results table under it.

Only widgets and their bindings; what the buttons do is in ``app``. Every control has an ``id`` so that a person
reading the tests, or the tests themselves, can find it.
"""

from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3

__all__ = ["build_page"]


def _connect_card(ctrl) -> None:
    with v3.VCard(classes="mb-2", variant="outlined"), v3.VCardText():
        v3.VTextField(v_model=("server_url",), label="SpineMorph server", id="server-url", density="compact",
                      hide_details=True, classes="mb-2")
        with v3.VRow(dense=True):
            with v3.VCol():
                v3.VTextField(v_model=("username",), label="User (if the server asks)", density="compact",
                              hide_details=True)
            with v3.VCol():
                v3.VTextField(v_model=("password",), label="Password", type="password", density="compact",
                              hide_details=True)
        # the buttons send their fields' values with the click, which can reach the app before the last keystrokes
        v3.VBtn("Connect", id="connect", click=(ctrl.connect, "[server_url, username, password]"), color="primary",
                block=True, classes="mt-2")
        html.Div("{{ server_name }}", id="server-name", classes="text-caption mt-1", v_if=("connected",))


def _sample_card(ctrl) -> None:
    with v3.VCard(classes="mb-2", variant="outlined", disabled=("!connected",)), v3.VCardText():
        with v3.VRow(dense=True):
            with v3.VCol(cols=7):
                v3.VSelect(v_model=("strategy",), items=("strategies",), label="Strategy", id="strategy",
                           density="compact", hide_details=True)
            with v3.VCol(cols=5):
                v3.VBtn("Next sample", id="next-sample", click=(ctrl.next_sample, "[strategy]"), block=True)
        with v3.VRow(dense=True, classes="mt-1"):
            with v3.VCol(cols=7):
                v3.VTextField(v_model=("wanted_image",), label="or image id", id="image-id", density="compact",
                              hide_details=True)
            with v3.VCol(cols=5):
                v3.VBtn("Open", id="open-image", click=(ctrl.open_image, "[wanted_image]"), block=True)
        html.Div("Image: {{ image_id }}", id="image-name", classes="text-caption mt-1", v_if=("image_id",))
        with v3.VRow(dense=True, classes="mt-1"):
            with v3.VCol(cols=7):
                v3.VSelect(v_model=("model",), items=("models",), label="Model", density="compact",
                           hide_details=True)
            with v3.VCol(cols=5):
                v3.VBtn("Auto-segment", id="auto-segment", click=(ctrl.auto_segment, "[model]"), block=True,
                        disabled=("!image_id",))


def _edit_card(ctrl) -> None:
    with v3.VCard(classes="mb-2", variant="outlined", disabled=("!levels.length",)), v3.VCardText():
        v3.VSelect(v_model=("level",), items=("levels",), label="Active level", id="level", density="compact",
                   hide_details=True)
        html.Div("{{ level }}: {{ level_px }} px", id="level-px", classes="text-caption my-1")
        with v3.VBtnToggle(v_model=("tool",), mandatory=True, density="compact", divided=True, variant="outlined"):
            v3.VBtn("None", value="none", id="tool-none")
            v3.VBtn("Brush", value="brush", id="tool-brush")
            v3.VBtn("Erase", value="erase", id="tool-erase")
        v3.VBtn("Undo", id="undo", click=ctrl.undo, classes="ml-2", density="compact", disabled=("!can_undo",))
        with v3.VRow(dense=True, classes="mt-2"):
            with v3.VCol():
                v3.VBtn("Measure", id="measure", click=ctrl.measure, block=True, color="secondary")
            with v3.VCol():
                v3.VBtn("Submit label", id="submit", click=ctrl.submit, block=True, color="success")
        with v3.VRow(dense=True, classes="mt-1"):  # the two one-click corrections of the Qt module
            with v3.VCol():
                v3.VBtn("Flip facing", id="flip-facing", click=ctrl.flip_facing, block=True, density="compact")
            with v3.VCol():
                v3.VBtn("Levels up", id="levels-up", click=(ctrl.shift_levels, "[-1]"), block=True,
                        density="compact")
            with v3.VCol():
                v3.VBtn("Levels down", id="levels-down", click=(ctrl.shift_levels, "[1]"), block=True,
                        density="compact")


def _train_card(ctrl) -> None:
    with v3.VCard(classes="mb-2", variant="outlined", disabled=("!connected",)), v3.VCardText():
        with v3.VRow(dense=True):
            with v3.VCol(cols=4):
                v3.VTextField(v_model_number=("epochs",), label="Epochs", type="number", density="compact",
                              hide_details=True)
            with v3.VCol(cols=8):
                v3.VBtn("{{ training ? 'Stop training' : 'Train' }}", id="train", click=ctrl.train, block=True)
        v3.VProgressLinear(model_value=("train_percent",), height=14, id="train-progress", classes="mt-2",
                           color="primary")
        html.Div("{{ train_text }}", id="train-text", classes="text-caption")
        with v3.VRow(dense=True, classes="mt-1"):
            with v3.VCol():
                v3.VBtn("Export CSV", id="export-csv", click=(ctrl.export, "['csv']"), block=True,
                        density="compact")
            with v3.VCol():
                v3.VBtn("Export PNG", id="export-png", click=(ctrl.export, "['png']"), block=True,
                        density="compact")
        html.Div("{{ exported }}", id="exported", classes="text-caption")
        html.A("Download {{ export_name }}", id="download", href=("export_url",), download=("export_name",),
               v_if="export_url", classes="text-caption")


def _results_table() -> None:
    with v3.VTable(density="compact", id="results", fixed_header=True, height="30vh"):
        with html.Thead(), html.Tr():
            html.Th("{{ h }}", v_for="h in headers", key="h")
        with html.Tbody():
            with html.Tr(v_for="(row, i) in rows", key="i", style=("{ background: row.color, color: '#000' }",)):
                html.Td("{{ cell }}", v_for="(cell, j) in row.cells", key="j",
                        title=("headers[j] === 'Flags' ? row.why : undefined",))


def build_page(server, layout_manager, ctrl):
    """Return the page's layout on ``server``, the film view placed by ``layout_manager``."""
    with SinglePageWithDrawerLayout(server, theme=("theme", "dark")) as layout:
        layout.title.set_text("SpineMorph")
        with layout.toolbar:
            v3.VSpacer()
            v3.VProgressCircular(indeterminate=True, size=22, v_if=("busy",), classes="mr-4")
        with layout.drawer as drawer:
            drawer.width = 380
            with html.Div(classes="pa-2"):
                v3.VAlert(text=("error",), type="error", id="error", v_if=("error",), closable=True,
                          density="compact", classes="mb-2", click_close="error = ''")
                v3.VAlert(text=("message",), type="info", id="message", v_if=("message",), density="compact",
                          classes="mb-2")
                _connect_card(ctrl)
                _sample_card(ctrl)
                _edit_card(ctrl)
                _train_card(ctrl)
        with layout.content:
            with html.Div(style="display: flex; flex-direction: column; height: calc(100vh - 64px);"):
                with html.Div(style="flex: 1 1 auto; min-height: 0; position: relative;", id="film"):
                    layout_manager.initialize_layout_grid(layout)
                _results_table()
    return layout
