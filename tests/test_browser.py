"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver)
through selenium, against `kew-plug dashboard` running as its own process on a real
redis-server with a known workload. Skips where Chromium is missing, unless
KEW_REQUIRE_BROWSER=1 (CI), which makes that a failure. KEW_SCREENSHOTS=DIR saves the
pictures the README shows."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.servers import free_port
from kew_plug.models import TaskState
from tests.test_dashboard import state_of, workload

REQUIRE = os.environ.get("KEW_REQUIRE_BROWSER") == "1"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        why = (
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
        if REQUIRE:
            pytest.fail(f"KEW_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def dashboard(redis_url: str, namespace: str) -> Iterator[str]:
    asyncio.run(workload(redis_url, namespace))
    port = free_port()
    command = ["dashboard", redis_url, "--namespace", namespace, "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kew_plug", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the dashboard did not start within 30 s"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("KEW_SCREENSHOTS")
    if folder:
        driver.save_screenshot(str(Path(folder) / name))


def test_dashboard_in_a_browser_shows_the_workload_and_requeues(
    browser: Any, dashboard: str, redis_url: str, namespace: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(dashboard)

    def count(field: str) -> str:
        cell = browser.find_element(
            By.CSS_SELECTOR, f'tr[data-queue="jobs"] td[data-field="{field}"]'
        )
        return str(cell.text)

    assert [count(f) for f in ("queued", "scheduled", "running", "dead")] == ["3", "1", "0", "1"]
    dead_row = browser.find_element(By.CSS_SELECTOR, 'tr[data-task="boom"]')
    assert "RuntimeError: exploded 7" in dead_row.text
    screenshot(browser, "dashboard.png")
    dead_row.find_element(By.CSS_SELECTOR, "button.requeue").click()
    # The click submits a form; the page it redirects to may not have loaded yet.
    message = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "message"))[0]
    assert message.text == "requeued boom"
    assert count("dead") == "0" and count("queued") == "4"
    assert asyncio.run(state_of(redis_url, namespace, "boom")) is TaskState.QUEUED


def test_harness_report_in_a_browser_has_one_lane_per_process(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import harness

    page = tmp_path / "report.html"
    report = harness.run(procs=3, tasks=300, progress=False, html=str(page))
    assert report.ok, report.data["failures"]
    processes = {int(pid) for pid in report.data["per_process"]}
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline .ytick text")
    )
    ticks = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline .ytick text")]
    # Lane labels read "p<index> <role> (<pid>)"; the throughput axis's ticks are numbers.
    lanes = [m.group(1) for t in ticks if (m := re.fullmatch(r"p\d+ [a-z+]* ?\((\d+)\)", t))]
    assert len(lanes) == len(set(lanes)) >= 3  # one lane per process
    assert processes <= {int(pid) for pid in lanes}
    assert browser.find_element(By.TAG_NAME, "h1").text == "kew-plug harness: OK"
    screenshot(browser, "harness-report.png")
