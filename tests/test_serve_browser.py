"""The page of `stemsep serve` in a real browser: a refused file is explained, the example song uploads,
separates and plays through one mixer whose stems each last as long as the song, and muting them silences it.

Debian's chromium runs headless, driven through Debian's chromedriver (both paths given, so Selenium
Manager never downloads anything; `scripts/install-chromium.sh` installs them). Web Audio needs no sound
card: with none, Chromium plays into its fake audio output, whose clock advances in real time;
--autoplay-policy=no-user-gesture-required is the one flag it needs (without it the AudioContext stays
"suspended"). The module took 21-26 s on 2 cores with the model cached;
every wait is bounded, the longest being SEPARATION_TIMEOUT_S.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serve.png"
MP3_FRAME_S = 1152 / 44100  # one MP3 frame: the most a decoder's padding handling may move the length
SEPARATION_TIMEOUT_S = 120
SILENT_RMS = 1e-4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver: run scripts/install-chromium.sh (make test does)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_health(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"stemsep serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"stemsep serve did not answer /healthz within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, official_2stems):
    """`stemsep serve` on a free port with its own data folder; yields (base URL, log file)."""
    folder = tmp_path_factory.mktemp("serve")
    port = _free_port()
    log = folder / "server.log"
    command = [sys.executable, "-m", "stemsep", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(folder / "data"), "--model-dir", str(official_2stems.parent)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(url, process, log)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1100,900",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, script: str, timeout: float, what: str):
    """Poll a JavaScript expression until it is truthy; fail naming `what` and the page's state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.2)
    state = driver.execute_script("return [stemsep.state, stemsep.message, stemsep.error];")
    pytest.fail(f"{what} did not happen within {timeout} s (state, message, error: {state})")


def _peak_level(driver, seconds: float = 0.5) -> float:
    """The largest analyser RMS seen over `seconds` (sampled every 50 ms in the page)."""
    return driver.execute_async_script(
        """
        const [seconds, done] = arguments;
        let peak = 0;
        const timer = setInterval(() => (peak = Math.max(peak, stemsep.outputLevel())), 50);
        setTimeout(() => (clearInterval(timer), done(peak)), seconds * 1000);
        """,
        seconds,
    )


def _seek_with_slider(driver, seconds: float) -> None:
    driver.execute_script(
        "const slider = document.getElementById('position');"
        "slider.value = arguments[0]; slider.dispatchEvent(new Event('change'));",
        seconds,
    )


def _click_all(driver, selector: str) -> None:
    for element in driver.find_elements("css selector", selector):
        element.click()


def _detail_for(url: str, path: Path) -> str:
    """The `detail` sentence the server answers when `path` is posted to /api/jobs (which must refuse it)."""
    boundary = "stemsep-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n\r\n'
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(f"{url}/api/jobs", data=body, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    return json.loads(refused.value.read())["detail"]


def _screenshot(driver, path: Path, metrics: dict) -> int:
    """Save the page as a screen of `metrics` shows it; returns how far it overflows sideways (px)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        time.sleep(0.3)  # the waveforms redraw for the new width on the next animation frame
        driver.save_screenshot(str(path))
        return driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_headless_browser_runs_web_audio_without_a_sound_card(server, browser):
    url, _ = server
    browser.get(url)
    state, advanced = browser.execute_async_script(
        """
        const done = arguments[0];
        const context = new AudioContext();
        const start = context.currentTime;
        setTimeout(() => done([context.state, context.currentTime - start]), 400);
        """
    )
    assert state == "running"
    assert advanced > 0.2


def test_a_refused_file_shows_the_servers_sentence(server, browser, tmp_path):
    url, _ = server
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("These are not the stems you are looking for.\n" * 20)
    browser.get(url)
    browser.find_element("id", "file-input").send_keys(str(not_audio))
    browser.find_element("id", "upload-button").click()
    _wait(browser, "stemsep.state === 'refused'", 30, "the refusal")
    assert browser.find_element("id", "error").text == _detail_for(url, not_audio)


def test_the_example_song_separates_and_plays_in_sync(server, browser, example_mp3, tmp_path):
    from stemsep.audio.decode import probe

    url, log = server
    browser.get(url)
    _wait(browser, "document.querySelector('#model option[value=\"spleeter:2stems\"]')", 10, "the model list")
    browser.find_element("id", "file-input").send_keys(str(example_mp3))
    browser.find_element("id", "upload-button").click()
    state = _wait(
        browser,
        "['ready', 'failed', 'refused', 'busy', 'lost'].includes(stemsep.state) && stemsep.state",
        SEPARATION_TIMEOUT_S,
        "the separation",
    )
    assert state == "ready", f"{browser.find_element('id', 'error').text}\n{log.read_text()[-2000:]}"

    # Every stem decodes to the song's length (decodeAudioData resamples to the context's rate; seconds stay).
    song = probe(example_mp3).duration
    durations = browser.execute_script("return stemsep.durations;")
    assert sorted(durations) == ["accompaniment", "vocals"]
    for stem, seconds in durations.items():
        assert abs(seconds - song) <= MP3_FRAME_S, f"{stem}: {seconds:.4f} s, the song {song:.4f} s"

    # Playing sounds; muting every stem, or soloing one and muting it, silences the analyser.
    browser.find_element("id", "play").click()
    _wait(browser, "stemsep.playing && stemsep.position > 0.3", 10, "playback")
    assert _peak_level(browser) > 0.01
    _click_all(browser, "#stems .mute")
    time.sleep(0.2)
    assert _peak_level(browser) < SILENT_RMS
    _click_all(browser, "#stems .mute")
    assert _peak_level(browser) > 0.01
    browser.find_element("css selector", '[data-stem="vocals"] .solo').click()
    assert _peak_level(browser) > 0.01
    browser.find_element("css selector", '[data-stem="vocals"] .mute').click()
    time.sleep(0.2)
    assert _peak_level(browser) < SILENT_RMS
    browser.find_element("css selector", '[data-stem="vocals"] .mute').click()
    browser.find_element("css selector", '[data-stem="vocals"] .solo').click()

    # Pause keeps the position; the finished page is the README's picture.
    _wait(browser, "stemsep.position > 2", 10, "two seconds of playback")
    browser.find_element("id", "play").click()
    paused_at = browser.execute_script("return stemsep.position;")
    time.sleep(0.3)
    assert not browser.execute_script("return stemsep.playing;")
    assert browser.execute_script("return stemsep.position;") == pytest.approx(paused_at)
    _seek_with_slider(browser, 5.0)  # a fixed playhead, so that the picture only changes when the page does
    assert browser.execute_script("return stemsep.position;") == pytest.approx(5.0)
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    _screenshot(browser, tmp_path / "serve.png", {"width": 1100, "height": height, "deviceScaleFactor": 1, "mobile": False})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / "serve.png", SCREENSHOT)

    # At phone width (emulated: a headless window is at least 500 px wide) nothing scrolls sideways.
    phone = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    overflow = _screenshot(browser, tmp_path / "serve-phone.png", phone)
    assert overflow <= 0
