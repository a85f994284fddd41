"""The dashboard in a real browser: Debian's chromium driven by selenium through Debian's chromedriver
(scripts/bootstrap.sh installs both; skipped, saying why, where either is missing).

Each page loads; a video becomes playable (readyState ≥ 2) and seeks; the overview's running job moves
without a reload; Retry requeues the job in the ledger; Save styles writes the sidecar; Rate stores the
rating in the library. Screenshots of every page go to $AFX_WEB_SHOTS (default: the test's temp folder).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.ratings import read_rating
from daemon.service.ledger import Ledger
from daemon.web.app import create_app
from daemon.web.security import web_access
from daemon.web.server import WebServer
from tests.web_world import STYLE_ID, World, build_world

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="chromium and chromedriver are not installed (apt-get install chromium "
                              "chromium-driver; scripts/bootstrap.sh does it unless AFX_BROWSER=0)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    world = build_world(tmp_path_factory.mktemp("web"))
    access = web_access(world.config)
    server = WebServer(create_app(world.config, access, read_only=False), access)
    server.start()
    url = server.wait_started(timeout=20)
    assert url, "the dashboard did not start"
    yield world, url.rstrip("/")
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("AFX_WEB_SHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(predicate: Any, *, timeout: float = 20.0, what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except StaleElementReferenceException:  # the page's poll replaced the element between find and read
            value = None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def ledger_of(world: World) -> Ledger:
    return Ledger(world.root / "state" / "ledger.sqlite3", create=False)


def test_every_page_loads(site: tuple[World, str], browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    _, url = site
    for path, title, needle in (("/", "Overview", "Recent failures"), ("/tracks", "Tracks", "Save styles"),
                                ("/styles", "Styles", "Rate"), ("/experiments", "Experiments", "sweep: organic"),
                                ("/api", "API", "/api/openapi.json")):
        browser.get(url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == title
        assert needle in browser.page_source
        # only the overview's own polling script runs: the names with <script> in them stayed text
        assert browser.execute_script("return document.scripts.length") == (1 if path == "/" else 0)
        browser.save_screenshot(str(shots / f"{title.lower()}.png"))
    browser.get(url + "/files/library/_sweeps/organic/comparison.html")
    assert "organic sweep" in browser.page_source


def test_a_video_plays_and_seeks(site: tuple[World, str], browser: Any, shots: Path) -> None:
    _, url = site
    browser.get(url + "/tracks")
    state = wait_for(lambda: browser.execute_script(
        "const v = document.querySelector('video'); return v && v.readyState >= 2 ? v.readyState : 0"),
        what="the video to become playable (readyState >= 2)")
    assert state >= 2
    assert browser.execute_script("return document.querySelector('video').duration") == pytest.approx(4.0, abs=0.2)
    browser.execute_script("const v = document.querySelector('video'); window.__seeked = false;"
                           "v.addEventListener('seeked', () => { window.__seeked = true; }); v.currentTime = 2.5;")
    wait_for(lambda: browser.execute_script("return window.__seeked"), what="the seek to finish")
    assert browser.execute_script("return document.querySelector('video').currentTime") == pytest.approx(2.5, abs=0.2)
    browser.save_screenshot(str(shots / "tracks-seeked.png"))


def test_the_overview_follows_a_running_job_without_a_reload(site: tuple[World, str], browser: Any,
                                                             shots: Path) -> None:
    from selenium.webdriver.common.by import By

    world, url = site
    ledger = ledger_of(world)
    with ledger.transaction() as conn:
        conn.execute("UPDATE jobs SET state = 'running', started = ?, progress_done = 10, progress_total = 40,"
                     " worker = 'cpu' WHERE key = ?", (time.time() - 5, world.queued_key))
    browser.get(url + "/")
    browser.execute_script("window.__same_page = true")
    wait_for(lambda: "10/40 (25.0%)" in browser.find_element(By.CSS_SELECTOR, "tr.running-job .progress").text,
             what="the running job's progress")
    with ledger.transaction() as conn:
        conn.execute("UPDATE jobs SET progress_done = 30 WHERE key = ?", (world.queued_key,))
    wait_for(lambda: "30/40 (75.0%)" in browser.find_element(By.CSS_SELECTOR, "tr.running-job .progress").text,
             what="the progress to move on the page")
    assert browser.execute_script("return window.__same_page === true")  # no reload
    wait_for(lambda: "ETA" in browser.find_element(By.CSS_SELECTOR, "tr.running-job .eta").text, what="the ETA")
    browser.save_screenshot(str(shots / "overview-running.png"))
    with ledger.transaction() as conn:
        conn.execute("UPDATE jobs SET state = 'queued', started = NULL, progress_done = NULL, progress_total = NULL"
                     " WHERE key = ?", (world.queued_key,))
    ledger.close()


def test_retry_requeues_the_job(site: tuple[World, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    world, url = site
    browser.get(url + "/")
    row = browser.find_element(By.CSS_SELECTOR, f'tr.failure[data-key="{world.failed_key}"]')
    row.find_element(By.CSS_SELECTOR, "form.retry button").click()
    wait_for(lambda: browser.current_url.rstrip("/") == url, what="the redirect back")

    def state() -> str:
        ledger = ledger_of(world)
        try:
            job = ledger.get(world.failed_key)
            return job.state if job else ""
        finally:
            ledger.close()

    assert wait_for(lambda: state() == "queued", what="the job to be queued")
    assert world.failed_key not in browser.page_source.split("Recent failures")[1]


def test_assign_a_style_writes_the_sidecar(site: tuple[World, str], browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    world, url = site
    browser.get(url + "/tracks")
    card = browser.find_element(By.CSS_SELECTOR, 'div.track[data-track="calm.wav"]')
    card.find_element(By.CSS_SELECTOR, 'input[name="styles"][value="neon"]').click()
    card.find_element(By.CSS_SELECTOR, "form.assign button").click()
    sidecar = world.root / "inbox" / "calm.toml"
    wait_for(sidecar.is_file, what="the sidecar")
    assert tomllib.loads(sidecar.read_text())["styles"] == ["neon"]
    wait_for(lambda: "sidecar: neon" in browser.page_source, what="the page to show it")
    browser.save_screenshot(str(shots / "tracks-assigned.png"))


def test_rate_a_style_is_persisted(site: tuple[World, str], browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    world, url = site
    browser.get(url + "/styles")
    card = browser.find_element(By.CSS_SELECTOR, f'div.style[data-id="{STYLE_ID}"]')
    card.find_element(By.CSS_SELECTOR, 'input[name="stars"][value="4"]').click()
    card.find_element(By.CSS_SELECTOR, 'textarea[name="note"]').send_keys("warm, keeps the beat")
    card.find_element(By.CSS_SELECTOR, "form.rate button").click()
    rating = wait_for(lambda: read_rating(world.style_folder), what="the rating file")
    assert (rating.stars, rating.note) == (4, "warm, keeps the beat")
    assert json.loads((world.style_folder / "rating.json").read_text())["stars"] == 4
    browser.get(url + "/styles")  # after a reload, from the library
    assert "★★★★☆" in browser.find_element(By.CSS_SELECTOR, f'div.style[data-id="{STYLE_ID}"] .rating').text
    browser.save_screenshot(str(shots / "styles-rated.png"))
