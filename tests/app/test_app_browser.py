"""End to end in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) uses the page of a live app over a per-window index of generated videos.

It uploads a query video and checks the top hit, plays a later window of it and reads the <video>
element's currentTime, sees a frame strip instead of a player for an AVI file (which browsers do
not play), uploads a broken file and reads the error. It saves a screenshot (path printed); with
TCLR_ZOO_UPDATE_SCREENSHOT=1, or when docs/app.png is missing, it also becomes docs/app.png (the
README's picture). Skipped, with the reason, where Chromium, its driver or Selenium is missing
(``make test`` installs them when it can).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

pytest.importorskip("fastapi", reason="the app extra is not installed (pip install 'tclr-zoo[app]')")

from app_helpers import LiveServer, app_models, build_index
from hostile_videos import write_video

from tclr_zoo.app.server import create_app
from tclr_zoo.app.service import SearchService
from tclr_zoo.data.synthetic import SyntheticConfig, generate

REPO = Path(__file__).resolve().parents[2]
FPS = 25
WAIT = 30  # seconds any one step may take in the browser
# Where to look (TCLR_ZOO_CHROMIUM / TCLR_ZOO_CHROMEDRIVER name another binary).
CHROMIUM = ("chromium", "chromium-browser", "/usr/bin/chromium")
CHROMEDRIVER = ("chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _find(names: tuple[str, ...], variable: str) -> str | None:
    if os.environ.get(variable):
        names = (os.environ[variable],)
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary, chromedriver = _find(CHROMIUM, "TCLR_ZOO_CHROMIUM"), _find(CHROMEDRIVER, "TCLR_ZOO_CHROMEDRIVER")
    if binary is None or chromedriver is None:
        pytest.skip("no Chromium or no chromedriver on this machine; install the Debian packages chromium and "
                    "chromium-driver (make test does, as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(arg)
    try:
        browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    except WebDriverException as err:  # installed but cannot start here (e.g. a snap wrapper in a container)
        pytest.skip(f"{binary} with {chromedriver} did not start: {str(err.msg or err).splitlines()[0]}")
    browser.set_script_timeout(WAIT)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    """Six synthetic H.264 MP4s (64 frames at 25 fps: windows start at 0, 1.24 and 1.32 s) and an AVI."""
    root = tmp_path_factory.mktemp("browser-videos")
    dataset = generate(root / "synthetic", SyntheticConfig(num_classes=3, groups=2, clips_per_group=1, test_groups=1,
                                                           frames=64, height=96, width=128))
    avi = write_video(root / "gradient.avi", 64, codec="mpeg4")
    return [*sorted(str(p) for p in dataset.rglob("*.mp4")), str(avi)]


@pytest.fixture(scope="module")
def app_url(videos, tmp_path_factory):
    index = build_index(app_models(tmp_path_factory)["classifier"], videos,
                        tmp_path_factory.mktemp("browser-index") / "moments",
                        windows=True)
    service = SearchService.open(index)
    server = LiveServer(create_app(service, max_upload_mb=0.3))  # 0.3 MB is 314572 bytes: 0.299999 MB
    yield server.url, service
    server.stop()


def _wait(browser, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.05).until(condition, message=f"waiting for {what}")


def _idle_with_results(browser) -> bool:
    return (browser.execute_script("return document.body.dataset.busy") == "0"
            and bool(browser.find_elements("css selector", "#results .hit")))


def _upload(browser, path: Path) -> None:
    browser.execute_script("document.getElementById('results').replaceChildren()")
    browser.find_element("id", "file").send_keys(str(path))


def _hits(browser) -> list:
    return browser.find_elements("css selector", "#results .hit")


def _elapsed(browser) -> float | None:
    """The seconds the "embedding..." status shows, or None when it shows something else."""
    found = re.fullmatch(r"embedding\u2026 (\d+\.\d) s", browser.find_element("id", "status").text)
    return float(found.group(1)) if found else None


def test_upload_search_play_a_window_and_errors(driver, app_url, videos, tmp_path, capsys):
    url, service = app_url
    driver.get(url)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "1", "the about data")

    expected = Path(videos[2])
    query = tmp_path / "my query clip.mp4"
    shutil.copyfile(expected, query)
    with service.model_lock:  # the model is busy: the page shows the upload done and the time spent waiting
        _upload(driver, query)
        first = _wait(driver, _elapsed, "the embedding state")
        _wait(driver, lambda d: (_elapsed(d) or 0) >= first + 0.3, "the elapsed time to grow")
        assert driver.find_element("id", "upload-progress").get_attribute("value") == "1"
    _wait(driver, _idle_with_results, "search results")
    hits = _hits(driver)
    assert hits[0].get_attribute("data-name") == expected.name  # the top hit is the query's own video
    assert "my query clip.mp4" in driver.find_element("id", "results-title").text

    # Play a later window of it: the <video> seeks to the window's start.
    card = next(h for h in hits
                if h.get_attribute("data-name") == expected.name and float(h.get_attribute("data-start")) > 0)
    start, end = float(card.get_attribute("data-start")), float(card.get_attribute("data-end"))
    # The position is read when the seek starts (the page set it) and reported once the seek is done:
    # read at 'seeked', a playing video may already have moved on by the time the handler runs.
    driver.execute_script("const v = document.getElementById('player'); window.seekedAt = null; let target = null;"
                          "v.addEventListener('seeking', () => { target = v.currentTime; }, {once: true});"
                          "v.addEventListener('seeked', () => { window.seekedAt = target; }, {once: true});")
    card.click()
    seeked = _wait(driver, lambda d: d.execute_script("return window.seekedAt"), "the player to seek")
    assert abs(seeked - start) <= 1 / FPS, (seeked, start)
    with capsys.disabled():
        print(f"\nbrowser: top hit {hits[0].get_attribute('data-name')} (the query's video {expected.name}); window "
              f"{start}-{end} s, <video>.currentTime after the seek {seeked} s")
    player = driver.find_element("id", "player")
    assert player.is_displayed() and not driver.find_element("id", "player-strip").is_displayed()
    assert player.get_attribute("src").endswith(f"/media/{card.get_attribute('data-row')}#t={start:g},{end:g}")
    _wait(driver, lambda d: d.execute_script("return document.getElementById('player').currentTime") > start,
          "the window to play")
    _screenshot(driver, tmp_path, capsys)
    driver.find_element("id", "about-btn").click()
    about = driver.find_element("id", "about").text
    assert "r3d_10_025" in about and "BGR" in about and "21 (7 videos, windows (moment search))" in about
    assert "up to 0.3 MB" in about and "0.299" not in about  # the limit as the user gave it

    # An AVI, found through "search by an indexed item": the page shows its frames instead of a player.
    driver.find_element("id", "item-filter").send_keys("gradient")
    _wait(driver, lambda d: d.find_element("id", "items-info").text.endswith("of 3"), "the filtered items")
    driver.execute_script("document.getElementById('results').replaceChildren()")
    driver.find_element("css selector", "#items li button").click()
    _wait(driver, _idle_with_results, "neighbours of the AVI window")
    avi = _hits(driver)[0]
    assert avi.get_attribute("data-name") == "gradient.avi"
    avi.click()
    strip = driver.find_element("id", "player-strip")
    _wait(driver, lambda d: strip.is_displayed() and d.execute_script("return arguments[0].naturalWidth", strip) > 0,
          "the AVI's frame strip")
    assert not driver.find_element("id", "player").is_displayed()
    assert "cannot play video/x-msvideo" in driver.find_element("id", "player-caption").text

    # A file that cannot be decoded: the decoder's reason, under the file's name, no traceback.
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(32 * 1024))
    _upload(driver, broken)
    message = driver.find_element("id", "message")
    _wait(driver, lambda d: message.is_displayed() and d.execute_script("return document.body.dataset.busy") == "0",
          "the error message")
    assert message.text.startswith("broken.mp4: ") and "cannot open" in message.text, message.text
    assert "Traceback" not in driver.page_source and not _hits(driver)


def _screenshot(driver, tmp_path: Path, capsys) -> None:
    """Save the page (the playing window and the results); update docs/app.png when asked or missing."""
    shot = tmp_path / "app.png"
    assert driver.save_screenshot(str(shot))
    docs = REPO / "docs" / "app.png"
    update = os.environ.get("TCLR_ZOO_UPDATE_SCREENSHOT") == "1" or not docs.exists()
    if update:
        docs.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, docs)
    with capsys.disabled():
        print(f"\nscreenshot of the app: {shot}" + (f" (copied to {docs})" if update else ""))
