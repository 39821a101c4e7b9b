"""The app's page in headless Chromium (Debian's chromium + chromium-driver through selenium, no browser download;
skipped with the reason where they are missing): load the page, type a caption, generate, hear the clip (an <audio>
element whose WAV the browser decoded), a screenshot as the test's artifact (MAGNET_APP_SCREENSHOT=docs/app.png also
copies it there), then record a clip from a fake microphone and see the server's message in the page."""

import os
import shutil
import time

import pytest
from support.tiny_generator import DURATION

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="headless browser test needs Debian's chromium and chromium-driver "
                           "(apt-get install chromium chromium-driver)")
def test_page_in_headless_chromium(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):  # a fake microphone
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(server.url)
        box = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#captions textarea"))
        box.send_keys("calm piano with soft rain")
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        audio = WebDriverWait(driver, 60).until(
            lambda d: next((a for a in d.find_elements(By.CSS_SELECTOR, "#gen-audio-0 audio")
                            if a.get_attribute("src")), None))
        assert "/gradio_api/file=" in audio.get_attribute("src") and audio.get_attribute("src").endswith(".wav")
        duration = WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("var a = document.querySelector('#gen-audio-0 audio');"
                                       "return a.readyState >= 1 && !a.error ? a.duration : null;"))
        assert abs(duration - DURATION) < 0.05  # the browser decoded the WAV
        time.sleep(1)  # let the player draw its duration before the picture
        shot = tmp_path / "app.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("MAGNET_APP_SCREENSHOT"):  # e.g. docs/app.png for the README
            shutil.copy(shot, os.environ["MAGNET_APP_SCREENSHOT"])
        record_a_clip(driver, By, WebDriverWait)
    finally:
        driver.quit()


def record_a_clip(driver, By, WebDriverWait) -> None:
    """Record about a second from the fake microphone in the Continue / infill tab and send it: the server reads the
    recording and, as it is longer than the 1 s limit, the page shows the one-line message (no traceback)."""
    next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Continue" in b.text).click()
    microphone = "#clip button[aria-label='Record audio']"
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, microphone)).click()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "#clip button.record-button")).click()
    time.sleep(2.0)
    next(b for b in driver.find_elements(By.CSS_SELECTOR, "#clip button") if b.text == "Stop").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#clip button[aria-label='Play']"))
    driver.find_element(By.CSS_SELECTOR, "#edit").click()
    toast = WebDriverWait(driver, 60).until(
        lambda d: next((t.text for t in d.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]")
                        if "the clip is" in t.text), None))
    assert "at most 1 s" in toast and "Traceback" not in toast
