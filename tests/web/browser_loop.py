"""Drive the SpineMorph page in headless Chromium through the loop; run in .venv-web's Python (selenium).

Usage: browser_loop.py PAGE_URL SERVER_URL OUT_DIR. Writes OUT_DIR/loop.json (what the page showed at each step)
and a screenshot per step. A real browser clicks and drags; nothing here calls the web app's Python.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser() -> webdriver.Chrome:
    """Return headless Chromium at 1400×900."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


class Page:
    """The SpineMorph page, found by its controls' ids."""

    def __init__(self, driver, out: Path) -> None:
        self.d, self.out, self.shots = driver, out, 0

    def text(self, element_id: str) -> str:
        for _ in range(10):
            try:
                found = self.d.find_elements(By.ID, element_id)
                return found[0].text if found else ""
            except StaleElementReferenceException:  # the page redrew it between finding and reading: read again
                time.sleep(0.05)
        return ""

    def wait_for(self, *ids: str, timeout: float = 60) -> str:
        """Wait until one of ``ids`` shows; return the id that did."""
        WebDriverWait(self.d, timeout, 0.1).until(lambda d: any(d.find_elements(By.ID, i) for i in ids))
        return next(i for i in ids if self.d.find_elements(By.ID, i))

    def wait_text(self, element_id: str, pattern: str, timeout: float = 60) -> str:
        """Wait until ``element_id`` shows text matching ``pattern``, or an error shows; return that text."""
        WebDriverWait(self.d, timeout, 0.1).until(
            lambda d: re.search(pattern, self.text(element_id)) or d.find_elements(By.ID, "error"))
        return self.text(element_id) or self.text("error")

    def click_for_message(self, element_id: str, pattern: str, timeout: float = 60) -> str:
        """Click ``element_id`` and return the new message (or error) it brings, matching ``pattern``."""
        before = self.text("message")
        self.click(element_id)
        WebDriverWait(self.d, timeout, 0.1).until(
            lambda d: (self.text("message") != before and re.search(pattern, self.text("message")))
            or d.find_elements(By.ID, "error"))
        return self.text("message") or self.text("error")

    def click(self, element_id: str) -> None:
        self.d.find_element(By.ID, element_id).click()

    def type(self, element_id: str, text: str) -> None:
        field = self.d.find_element(By.ID, element_id)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        field.send_keys(text)

    def choose(self, element_id: str, item: str) -> None:
        """Pick ``item`` in the select ``element_id`` as a person does: open its list, click the item."""
        self.d.find_element(By.XPATH, f"//input[@id='{element_id}']/ancestor::div[contains(@class, 'v-field')]").click()
        WebDriverWait(self.d, 10).until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".v-list-item-title")
                                                   if e.text == item])[0].click()
        WebDriverWait(self.d, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".v-overlay--active .v-list"))

    def dismiss_error(self) -> None:
        for button in self.d.find_elements(By.CSS_SELECTOR, "#error button"):
            button.click()
        WebDriverWait(self.d, 10).until(lambda d: not d.find_elements(By.ID, "error"))

    def level_px(self) -> tuple[str, int]:
        """Return the active level and its pixel count as the page shows them ("L2: 348 px")."""
        found = re.match(r"(\S+): (\d+) px", self.text("level-px"))
        return found.group(1), int(found.group(2))

    def wait_px_change(self, before: int, timeout: float = 15) -> int:
        WebDriverWait(self.d, timeout, 0.1).until(lambda d: self.level_px()[1] != before)
        return self.level_px()[1]

    def stroke(self, dx: int, dy: int) -> None:
        """Press in the film view at (dx, dy) px from its centre and drag down 30 px."""
        film = self.d.find_element(By.ID, "film")
        chain = ActionChains(self.d).move_to_element_with_offset(film, dx, dy).pause(0.3).click_and_hold().pause(0.2)
        for _ in range(5):
            chain.move_by_offset(0, 6).pause(0.1)
        chain.release().pause(0.3).perform()

    def shot(self, name: str) -> None:
        self.shots += 1
        self.d.save_screenshot(str(self.out / f"{self.shots:02d}-{name}.png"))

    def table(self) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
        """Return the results table's headers, cells, row background colours and cells' tooltips."""
        table = self.d.find_element(By.ID, "results")
        headers = [th.text.replace("\n", " ") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in rows]
        titles = [[td.get_attribute("title") or "" for td in tr.find_elements(By.TAG_NAME, "td")] for tr in rows]
        return headers, cells, [tr.value_of_css_property("background-color") for tr in rows], titles


def run(page: Page, server_url: str) -> dict:
    """Go through the loop; return what the page showed."""
    seen: dict = {}
    page.wait_for("connect")
    page.type("server-url", "http://127.0.0.1:9")  # nothing listens there
    page.click("connect")
    page.wait_for("error")
    seen["unreachable"] = page.text("error")
    page.dismiss_error()
    page.type("server-url", server_url)
    page.click("connect")
    seen["connected"] = page.text(page.wait_for("server-name", "error"))

    page.type("image-id", "no-such-image")
    page.click("open-image")
    seen["unknown_image"] = page.text(page.wait_for("error"))
    page.dismiss_error()

    page.choose("strategy", "first")  # the first unlabelled film by id: a DICOM of the test studies
    page.click("next-sample")
    seen["image"] = page.text(page.wait_for("image-name", "error")).removeprefix("Image: ")
    page.click("auto-segment")
    seen["segmented"] = page.wait_text("message", "levels|no body")
    page.shot("auto-segment")

    level, start = page.level_px()
    page.click("tool-brush")
    time.sleep(0.5)
    page.stroke(0, -40)
    first = page.wait_px_change(start)
    page.stroke(40, 40)
    second = page.wait_px_change(first)
    page.shot("painted")
    page.click("undo")
    undone = page.wait_px_change(second)
    page.click("tool-none")
    seen["paint"] = {"level": level, "start": start, "first": first, "second": second, "undone": undone}

    page.click("measure")
    WebDriverWait(page.d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results tbody tr") or
                                    d.find_elements(By.ID, "error"))
    seen["error_after_measure"] = page.text("error")
    seen["measured_message"] = page.wait_text("message", "^Facing:")
    seen["headers"], seen["rows"], seen["row_colours"], seen["cell_titles"] = page.table()
    page.shot("measured")

    # Export CSV: the page links the file for the browser to download (fetched here as the browser would)
    page.click("export-csv")
    link = WebDriverWait(page.d, 30).until(lambda d: d.find_elements(By.ID, "download"))[0]
    seen["download"] = {"text": link.text, "href": link.get_attribute("href"),
                        "name": link.get_attribute("download")}
    with urllib.request.urlopen(seen["download"]["href"], timeout=30) as answer:
        seen["download"]["csv"] = answer.read().decode()

    # the one-click corrections, each undone again so that what is submitted is what was measured above
    seen["shifted"] = page.click_for_message("levels-up", "^Levels now")
    seen["shifted_back"] = page.click_for_message("levels-down", "^Levels now")
    seen["flipped"] = page.click_for_message("flip-facing", "^Facing set to")
    seen["flipped_back"] = page.click_for_message("flip-facing", "^Facing set to")

    page.click("submit")
    seen["submitted"] = page.wait_text("message", "saved")
    page.shot("submitted")
    return seen


def main() -> None:
    page_url, server_url, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    driver = browser()
    try:
        driver.get(page_url)
        page = Page(driver, out)
        try:
            seen = run(page, server_url)
        except Exception:
            page.shot("failed")
            raise
    finally:
        driver.quit()
    (out / "loop.json").write_text(json.dumps(seen, indent=1))


if __name__ == "__main__":
    main()
