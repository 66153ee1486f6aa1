"""A real browser for the console's tests: Debian's Chromium, headless, driven by Selenium
through the system's ChromeDriver (installed from Debian's packages when missing, as
tests/support/packages.py installs redis-server).

`open_browser(directory)` starts one (conftest's `browser` fixture is that, for a test) and
quits it on leaving, with every process it started; the helpers read what a page did:
`resource_origins` (where its requests went), `cookies` (with their HttpOnly flags),
`screenshot`, `phone`/`desktop` (the viewport's width), `wait_until`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

import psutil
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service

from support import DEADLINE, wait_for
from support.packages import provide

PROGRAMS = ("chromium", "chromedriver")
PACKAGES = ("chromium", "chromium-driver")    # Debian's: /usr/bin/chromium, /usr/bin/chromedriver
DESKTOP = (1280, 900)                         # the window's size, CSS pixels
PHONE = (390, 844)                            # a phone's viewport, CSS pixels
PAGE_LOAD_TIMEOUT = 30.0                      # seconds driver.get() may take
NETWORK_SCHEMES = ("http", "https", "ws", "wss")
QUIT_TIMEOUT = 10.0                           # seconds the browser's processes have to exit after quit()
# Headless in a container as root, and quiet: nothing but the pages a test loads goes out
# (no updates, sync, field trials or QUIC probes that a test of origins would see).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")

_screenshot_dirs: WeakKeyDictionary[webdriver.Chrome, Path] = WeakKeyDictionary()


def find_chromium() -> tuple[str, str]:
    """(chromium, chromedriver): their paths, installing Debian's packages when one is
    missing. Raises PackageError when they cannot be had (not root, no apt-get...)."""
    chromium, driver = provide(*PROGRAMS, packages=PACKAGES)
    return chromium, driver


def chrome_options(chromium: str, user_data_dir: Path, size: tuple[int, int] = DESKTOP) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={user_data_dir}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    # DevTools' network events, read by requested_urls(): every request, failed ones too.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return options


@contextmanager
def open_browser(directory: Path, programs: tuple[str, str] | None = None) -> Iterator[webdriver.Chrome]:
    """A headless Chromium of its own, its profile and ChromeDriver's log in `directory`;
    on leaving, quit and every process it started gone (killed after QUIT_TIMEOUT).
    `programs`: (chromium, chromedriver), else find_chromium()'s. Blocks until the browser
    answers; raises PackageError (no browser) or Selenium's WebDriverException."""
    chromium, chromedriver = programs or find_chromium()
    profile = directory / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=chromedriver, log_output=str(directory / "chromedriver.log"))
    driver = webdriver.Chrome(options=chrome_options(chromium, profile), service=service)
    _screenshot_dirs[driver] = directory
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        desktop(driver)
        yield driver
    finally:
        started = browser_processes(profile, service.process.pid)
        try:
            driver.quit()
        finally:
            _, alive = psutil.wait_procs(started, timeout=QUIT_TIMEOUT)
            for proc in living(alive):
                proc.kill()
            psutil.wait_procs(alive, timeout=QUIT_TIMEOUT)


def browser_processes(profile: Path, driver_pid: int | None = None) -> list[psutil.Process]:
    """The processes of the browser whose profile is `profile`: ChromeDriver (`driver_pid`)
    and what it started, and any process naming that profile on its command line."""
    found: dict[int, psutil.Process] = {}
    if driver_pid is not None:
        try:
            driver = psutil.Process(driver_pid)
            found = {p.pid: p for p in (driver, *driver.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass
    flag = f"--user-data-dir={profile}"
    for proc in psutil.process_iter(["cmdline"]):
        if flag in (proc.info["cmdline"] or ()):
            found.setdefault(proc.pid, proc)
    return list(found.values())


def living(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running: not gone, and not a zombie waiting for its parent
    (a browser's processes are reparented when ChromeDriver exits, and the container's
    first process may be slow to reap them)."""
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


# -- what a page did

def origin(url: str) -> str:
    """scheme://host[:port] of `url`, as a browser compares them; the URL itself when it has
    no host (data:, about:blank)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def resource_origins(driver: webdriver.Chrome) -> set[str]:
    """The origins of the page itself and of every resource it loaded (Resource Timing:
    scripts, styles, images, fonts, fetches), as the page's performance timeline records
    them. Its buffer holds the first 250 resources unless the page raises it."""
    urls = driver.execute_script(
        "return [location.href].concat("
        "performance.getEntriesByType('navigation').map(e => e.name),"
        "performance.getEntriesByType('resource').map(e => e.name))")
    return {origin(url) for url in urls}


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every network URL (http, https, ws, wss) the browser asked for since the last call:
    DevTools' Network.requestWillBeSent, so requests that failed or were blocked too, which
    Resource Timing may leave out. The browser's own pages (chrome://, data:) are not asked
    of any host and are left out."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if urlsplit(url).scheme in NETWORK_SCHEMES:
                urls.append(url)
    return urls


def requested_origins(driver: webdriver.Chrome) -> set[str]:
    """The origins of requested_urls(): every host the browser asked anything of since the last call."""
    return {origin(url) for url in requested_urls(driver)}


def cookies(driver: webdriver.Chrome) -> dict[str, dict[str, Any]]:
    """The current page's cookies by name, as the browser holds them: value, path, httpOnly,
    secure, sameSite, expiry (absent for a session cookie)."""
    return {c["name"]: c for c in driver.get_cookies()}


def screenshot(driver: webdriver.Chrome, name: str, directory: Path | None = None) -> Path:
    """The viewport as NAME.png in `directory`, else $GQ_SCREENSHOTS, else the browser's
    own directory (tmp_path / "browser", for the `browser` fixture); its path."""
    where = directory or (Path(os.environ["GQ_SCREENSHOTS"]) if os.environ.get("GQ_SCREENSHOTS")
                          else _screenshot_dirs[driver])
    where.mkdir(parents=True, exist_ok=True)
    path = where / (re.sub(r"[^A-Za-z0-9_.-]", "-", name) + ".png")
    if not driver.save_screenshot(str(path)):
        raise OSError(f"the browser could not write {path}")
    return path


def phone(driver: webdriver.Chrome, size: tuple[int, int] = PHONE) -> None:
    """Lay pages out as a phone does: a viewport of `size` CSS pixels, touch, the page's
    <meta name=viewport> obeyed. Holds for this page and the next ones until desktop()."""
    _viewport(driver, size, mobile=True)


def desktop(driver: webdriver.Chrome, size: tuple[int, int] = DESKTOP) -> None:
    """A viewport of `size` CSS pixels, no touch: how open_browser() starts (a headless
    window's own viewport is its size less a toolbar's height)."""
    _viewport(driver, size, mobile=False)


def _viewport(driver: webdriver.Chrome, size: tuple[int, int], mobile: bool) -> None:
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": mobile, "maxTouchPoints": 5})


def wait_until(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], what: str,
               timeout: float = DEADLINE) -> Any:
    """What `condition(driver)` returns once it is truthy; the test fails after `timeout`
    seconds, naming `what`. An element not there yet, or replaced since it was found, counts
    as not yet; any other exception fails the test at once."""
    def met() -> Any:
        try:
            return condition(driver)
        except (NoSuchElementException, StaleElementReferenceException):
            return None
    return wait_for(met, timeout, what, every=0.05)


def loaded(driver: webdriver.Chrome) -> bool:
    """A condition for wait_until: the page and its resources have loaded."""
    return driver.execute_script("return document.readyState") == "complete"
