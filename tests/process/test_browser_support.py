"""The browser the console's tests drive (tests/support/browser.py): a page of gq's own, a page with a
script and an image, what the helpers read of them, and no process left behind."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from selenium.webdriver.common.by import By

from support.browser import (
    DESKTOP,
    PHONE,
    browser_processes,
    cookies,
    desktop,
    living,
    loaded,
    open_browser,
    phone,
    requested_origins,
    resource_origins,
    screenshot,
    wait_until,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>waiting</title><script src="/app.js"></script></head>
<body><h1>gq test page</h1><img id="dot" src="/dot.png" alt="dot" width="40" height="40">{extra}</body></html>
"""
SCRIPT = b"""document.addEventListener('DOMContentLoaded', () => {
  document.title = 'script ran';
  document.body.insertAdjacentHTML('beforeend', '<p id="from-script">' + window.innerWidth + '</p>');
});
"""


@contextmanager
def site(extra: str = "") -> Iterator[str]:
    """A page with a script and an image, served on loopback (`extra`: more HTML in its body);
    its base URL. Every answer sets a cookie `seen`, HttpOnly, and `theme`, not."""
    files = {"/": ("text/html", PAGE.format(extra=extra).encode()), "/app.js": ("text/javascript", SCRIPT),
             "/dot.png": ("image/png", png(40, 40, (200, 30, 30)))}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            kind, body = files.get(self.path, ("text/plain", b""))
            self.send_response(200 if self.path in files else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Set-Cookie", "seen=1; Path=/; HttpOnly; SameSite=Strict")
            self.send_header("Set-Cookie", "theme=dark; Path=/")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_of_gq_seen_from_its_own_origin(browser, start_daemon):
    daemon = start_daemon()
    browser.get(f"{daemon.api}/openapi.json")
    wait_until(browser, loaded, "openapi.json to load")
    assert '"openapi"' in browser.find_element(By.TAG_NAME, "body").text
    assert resource_origins(browser) == {daemon.api}
    assert requested_origins(browser) == {daemon.api}
    shot = screenshot(browser, "openapi")
    assert png_size(shot) == DESKTOP and shot.stat().st_size > 2000


def test_a_page_with_a_script_and_an_image(browser, tmp_path, monkeypatch):
    with site() as base:
        browser.get(base + "/")
        wait_until(browser, lambda d: d.title == "script ran", "the page's script to run")
        image = browser.find_element(By.ID, "dot")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 40
        assert resource_origins(browser) == {base}
        assert requested_origins(browser) == {base}
        assert browser.find_element(By.ID, "from-script").text == str(DESKTOP[0])
        held = cookies(browser)
        assert held["seen"]["httpOnly"] is True and held["seen"]["sameSite"] == "Strict"
        assert held["theme"]["httpOnly"] is False
        assert browser.execute_script("return document.cookie") == "theme=dark"   # HttpOnly hidden from scripts

        phone(browser)
        browser.refresh()
        wait_until(browser, lambda d: d.find_element(By.ID, "from-script").text == str(PHONE[0]),
                   "the page laid out at a phone's width")
        monkeypatch.setenv("GQ_SCREENSHOTS", str(tmp_path / "shots"))
        shot = screenshot(browser, "test page: phone")
        assert shot == tmp_path / "shots" / "test-page--phone.png"
        assert png_size(shot) == PHONE and shot.stat().st_size > 500
        desktop(browser)
        browser.refresh()
        wait_until(browser, lambda d: d.find_element(By.ID, "from-script").text == str(DESKTOP[0]),
                   "the page laid out at the window's width again")


def test_a_request_to_another_origin_is_seen(browser):
    """The helpers see what a test of the console's origin must catch: a resource of another
    port (another origin), and a request that fails (which only DevTools' log shows)."""
    with site() as other:
        with_foreign = f'<img src="{other}/dot.png"><script src="http://127.0.0.1:9/gone.js" async></script>'
        with site(with_foreign) as page:
            browser.get(page + "/")
            wait_until(browser, loaded, "the page to load")
            assert resource_origins(browser) >= {page, other}
            assert requested_origins(browser) == {page, other, "http://127.0.0.1:9"}


def test_no_process_is_left_behind(chromium, tmp_path):
    with open_browser(tmp_path, chromium) as driver:
        pid = driver.service.process.pid
        driver.get("data:text/html,<title>x</title><iframe src='data:text/html,y'></iframe>")
        running = browser_processes(tmp_path / "chromium-profile", pid)
        assert len(living(running)) >= 3      # ChromeDriver, the browser, a renderer at least
    assert living(running) == []
    assert living(browser_processes(tmp_path / "chromium-profile")) == []
