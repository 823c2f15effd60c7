"""Makes the pictures the README shows, in headless Chromium: the dashboard over a live
workload (two worker processes running slow tasks, some failing), and the harness report of
a run on real Redis with workers killed and paused.

    python docs/screenshots.py          # writes docs/dashboard.png, docs/harness-report.png

Needs redis-server, chromium and chromedriver (as the browser tests do)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.servers import RedisServer, free_port

HERE = Path(__file__).resolve().parent
SECRET = "screenshot-secret-0123456789abcdef"
APP = """
import time
from kew_plug.settings import queue_from_env

emails = queue_from_env("emails")
reports = queue_from_env("reports")


def send(n):
    time.sleep(2.0)
    return n


def render(n):
    if n % 4 == 0:
        raise ValueError(f"template {n} has no title")
    time.sleep(3.0)
    return n
"""


async def submit(url: str) -> None:
    sys.path.insert(0, os.environ["SHOT_DIR"])
    import shot_app

    for i in range(40):
        await shot_app.emails.submit(shot_app.send, (i,))
    for i in range(12):
        await shot_app.reports.submit(shot_app.render, (i,), retries=0)
    await shot_app.reports.submit(shot_app.render, (99,), delay=600)
    await shot_app.emails.aclose()
    await shot_app.reports.aclose()


def browser() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main() -> None:
    with RedisServer() as server:
        folder = Path(server.dir)
        (folder / "shot_app.py").write_text(APP)
        env = {
            **os.environ,
            "KEW_PLUG_URL": server.url,
            "KEW_PLUG_SECRET": SECRET,
            "PYTHONPATH": str(folder),
            "SHOT_DIR": str(folder),
        }
        os.environ.update(env)
        asyncio.run(submit(server.url))
        kew = [sys.executable, "-m", "kew_plug"]
        targets = ["shot_app:emails", "shot_app:reports"]
        options = ["--processes", "2", "--concurrency", "3", "--log-level", "ERROR"]
        workers = subprocess.Popen(
            [*kew, "worker", *targets, *options],
            env=env,
            cwd=folder,
        )
        port = free_port()
        board = subprocess.Popen([*kew, "dashboard", server.url, "--port", str(port)], env=env)
        try:
            time.sleep(4.5)  # workers started, some tasks done, some failed, some running
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
            driver = browser()
            try:
                driver.get(f"http://127.0.0.1:{port}/")  # type: ignore[attr-defined]
                driver.save_screenshot(str(HERE / "dashboard.png"))  # type: ignore[attr-defined]
            finally:
                driver.quit()  # type: ignore[attr-defined]
        finally:
            board.terminate()
            workers.send_signal(signal.SIGTERM)
            board.wait(30)
            workers.wait(60)
    print(f"wrote {HERE / 'dashboard.png'}")
    harness_picture()


def harness_picture() -> None:
    """`python -m harness --store redis --faults kill=3,pause=2 --html …`, photographed."""
    import harness

    page = HERE / "harness-report.html"
    report = harness.run(
        store="redis", procs=4, tasks=2000, faults={"kill": 3, "pause": 2}, html=str(page),
        progress=False, seed=6,
    )  # fmt: skip
    print("harness:", "OK" if report.ok else report.data["failures"])
    driver = browser()
    try:
        driver.set_window_size(1400, 1400)  # type: ignore[attr-defined]
        driver.get(page.as_uri())  # type: ignore[attr-defined]
        time.sleep(2.0)  # Plotly draws after load
        driver.save_screenshot(str(HERE / "harness-report.png"))  # type: ignore[attr-defined]
    finally:
        driver.quit()  # type: ignore[attr-defined]
        page.unlink()
    print(f"wrote {HERE / 'harness-report.png'}")


if __name__ == "__main__":
    main()
