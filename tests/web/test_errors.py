"""The page's error sentences (web/spinemorph_web/errors.py): plain Python, no browser or trame needed."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "web"), str(REPO / "slicer_module" / "SpineMorph")]
from spinemorph_web.errors import explain  # noqa: E402

from SpineMorphLib.client import ServerError  # noqa: E402


def test_an_unreachable_server_says_to_start_one():
    text = explain("connect", ServerError(0, "no server", "http://h:1/info/"), "http://h:1")
    assert text.startswith("No SpineMorph server answers at http://h:1.") and "make demo" in text


def test_an_unknown_image_names_it_and_offers_next_sample():
    text = explain("open", ServerError(404, "No image with id 'x'"), image_id="x")
    assert "has no image 'x'" in text and "Next sample" in text


def test_a_refused_label_gives_the_servers_reason():
    text = explain("submit", ServerError(422, "label values 99 are not VerSe level codes"))
    assert text == ("The server refused the label (422): label values 99 are not VerSe level codes. Fix the "
                    "segments and submit again.")


def test_a_login_is_asked_for_on_401():
    assert "user name and password" in explain("next sample", ServerError(401, "unauthorized"))


def test_other_errors_say_what_failed():
    assert explain("measure", ValueError("Auto-segment first")) == "Could not measure: Auto-segment first"
