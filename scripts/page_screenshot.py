"""Screenshot of the page `polytask serve` shows at `/`, with the answers to one input (what docs/page.png is).

    .venv/bin/python scripts/page_screenshot.py runs/demo/best --out docs/page.png \
        --text "play the new song by adele on spotify"

Starts the real server (`polytask serve CKPT` on a free port of 127.0.0.1), opens the page in headless Chromium
(Debian: `apt-get install chromium chromium-driver`; Python: selenium from the `test` extra), types the input,
presses Predict, waits for the answers and saves a PNG of the whole page. Nothing is downloaded: it drives the
system's chromium and chromedriver.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if server.poll() is not None:
            sys.exit(f"the server ended with exit code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"no answer from {url} within {seconds:g} s")


def browser(width: int):  # noqa: ANN201  (selenium is optional)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        sys.exit("needs chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--force-color-profile=srgb", "--hide-scrollbars", f"--window-size={width},900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint folder (e.g. runs/demo/best)")
    parser.add_argument("--out", default="docs/page.png", help="PNG to write")
    parser.add_argument("--text", default="play the new song by adele on spotify", help="the text to type")
    parser.add_argument("--pair", default=None, help="a second text: the input is a pair (QA: question + context)")
    parser.add_argument("--width", type=int, default=1200, help="window width in CSS pixels")
    args = parser.parse_args()

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    cmd = [sys.executable, "-m", "polytask.cli", "serve", args.checkpoint, "--port", str(port)]
    server = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    driver = None
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        driver = browser(args.width)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        if args.pair is not None:
            driver.find_element(By.ID, "kind-pair").click()
            driver.find_element(By.ID, "text-b").send_keys(args.pair)
        driver.find_element(By.ID, "text-a").send_keys(args.text)
        driver.find_element(By.ID, "predict").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .task"))
        for _ in range(3):  # the window holds the viewport plus some frame: grow it until the whole page shows
            missing = driver.execute_script("return document.documentElement.scrollHeight - window.innerHeight")
            if missing <= 0:
                break
            size = driver.get_window_size()
            driver.set_window_size(args.width, size["height"] + int(missing))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(args.out)
        print(f"wrote {args.out}")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
