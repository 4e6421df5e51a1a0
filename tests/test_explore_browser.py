"""supermem explore in a real browser: Debian's headless Chromium, driven by Playwright.

The page is served by ``supermem explore`` in a subprocess on a free 127.0.0.1 port over
a small real sweep. Every request whose host is not 127.0.0.1 or localhost is blocked
and recorded, and the test asserts there were none: the page works with no internet.
Moving the snapshot slider must change the drawn vectors (screenshots of the plot row
differ); the T slider, and a click on a row of the filtered table, must show another run;
a full screenshot is checked for content (pixel spread, the paper's feature and data
colours) and the DOM for the expected elements. Skips where no Chromium is found
(``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import io
import select
import shutil
import subprocess
import sys
import time
from urllib.parse import urlparse

import numpy as np
import pytest

pytest.importorskip("panel", reason="supermem explore needs the explore extra (Panel)")
playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install chromium)", allow_module_level=True)

LOCAL = {"127.0.0.1", "localhost"}
SERVER_START_S = 120  # importing torch and Panel on a busy 2-core machine


@pytest.fixture(scope="module")
def server(tiny_sweep, tmp_path_factory):
    """(URL, stderr file) of ``supermem explore`` serving the tiny sweep on a free port."""
    log = tmp_path_factory.mktemp("server") / "stderr.txt"
    cmd = [sys.executable, "-m", "supermem", "explore", str(tiny_sweep), "--port", "0"]
    with log.open("w") as err:
        proc = subprocess.Popen([*cmd, "--no-show"], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], SERVER_START_S)
        line = proc.stdout.readline().strip() if ready else ""  # the URL, once bound
        if not line.startswith("http://127.0.0.1:"):
            pytest.fail(f"explore printed {line!r}; stderr: {log.read_text()[-2000:]}")
        yield line, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, url: str, seen: list[str], outside: list[str]):
    """A page at ``url`` where every request is recorded in ``seen``, and any to a host
    other than this machine is refused and recorded in ``outside`` (websockets too)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1300})

    def route(r) -> None:
        u = urlparse(r.request.url)
        seen.append(r.request.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.hostname not in LOCAL:
            outside.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    page.on("websocket", lambda ws: urlparse(ws.url).hostname in LOCAL or outside.append(ws.url))
    page.goto(url, wait_until="networkidle", timeout=SERVER_START_S * 1000)
    return page


def wait_text(page, selector: str, text: str, timeout_s: float = 30) -> str:
    """The text of ``selector`` once it contains ``text`` (fails after timeout_s)."""
    end = time.monotonic() + timeout_s
    got = ""
    while time.monotonic() < end:
        got = page.locator(selector).first.inner_text()
        if text in got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{selector} never showed {text!r}; last: {got!r}")


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def has_colour(img: np.ndarray, hex_rgb: str, tol: int = 40) -> bool:
    rgb = np.array([int(hex_rgb[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(img - rgb).max(axis=-1) < tol).sum() > 20)


def test_explore_page__offline_and_sliders_change_the_picture(server, browser, tmp_path):
    from supermem.report.plots import DATA_COLOR, FEATURE_COLOR

    url, log = server
    seen: list[str] = []
    outside: list[str] = []
    page = open_page(browser, url, seen, outside)
    wait_text(page, ".sm-line", "snapshot 6 of 6")
    geometry = page.locator(".sm-geometry").first
    before = geometry.screenshot()

    handle = page.locator(".sm-snapshot .noUi-handle").first
    handle.focus()
    handle.press("Home")  # noUiSlider's keyboard support: to the first snapshot
    wait_text(page, ".sm-line", "snapshot 1 of 6")
    assert page.locator(".sm-snapshot").get_by_text("step 0", exact=True).count() == 1
    time.sleep(0.5)  # let the canvas repaint
    after = geometry.screenshot()
    diff = np.abs(pixels(before) - pixels(after)).max(axis=-1)
    assert (diff > 30).sum() > 50, "moving the snapshot slider did not change the plots"

    t_handle = page.locator(".sm-T .noUi-handle").first
    t_handle.focus()
    t_handle.press("End")  # the T slider walks the sweep to its largest T
    wait_text(page, ".sm-line", "T = 8")
    assert page.locator(".sm-T").get_by_text("T: 8").count() == 1

    t_filter = page.locator(".sm-table .tabulator-col[tabulator-field='T'] input").first
    t_filter.fill("5")  # the T column's filter keeps T >= 5
    t_filter.press("Enter")
    rows = page.locator(".sm-table .tabulator-row")
    rows.nth(4).wait_for(state="detached", timeout=10_000)  # 6 rows -> 4
    rows.first.click()  # the first row left: T = 5, data seed 0
    wait_text(page, ".sm-line", "T = 5")

    shot = tmp_path / "explore.png"
    page.screenshot(path=str(shot), full_page=True)
    img = pixels(shot.read_bytes())
    assert img.std() > 20, "the screenshot is blank"
    assert has_colour(img, FEATURE_COLOR) and has_colour(img, DATA_COLOR)
    assert page.get_by_text("supermem explore:").count() == 1  # the heading
    headers = page.locator(".sm-table .tabulator-col-title").all_inner_texts()
    assert {"run", "status", "T", "m", "data_seed", "test_loss"} <= set(headers)
    assert rows.count() == 4
    assert page.locator("canvas").count() >= 6
    assert any("/static/js/bokeh" in u for u in seen)  # the scripts came through the route
    assert outside == [], f"requests left the machine: {outside}"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    page.close()
