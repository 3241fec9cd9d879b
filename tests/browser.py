"""Headless Chromium (Debian's, driven by Playwright for Python) and local servers for the web
page and app tests. Chromium runs with no network beyond localhost: the machine has none, and
the tests also refuse and record any request that leaves 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--force-color-profile=srgb",  # canvas pixels equal the file's
    "--use-fake-ui-for-media-stream",  # the webcam: allowed, and a synthetic camera
    "--use-fake-device-for-media-stream",
]


def require(module: str):
    """Imports a test dependency; in CI (where the set-up installs it) its absence fails."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed (scripts/setup.sh installs it)")
        pytest.skip(f"{module} is not installed")


def require_chromium() -> str:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/setup.sh runs apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def serving(command: list[str], port: int, timeout: float = 120, **kwargs):
    """Runs a server command until the block ends; yields its base URL."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    try:
        try:
            wait_for_port(port, process, timeout)
        except (RuntimeError, TimeoutError) as e:
            process.kill()
            output = process.communicate(timeout=10)[0].decode(errors="replace")
            raise RuntimeError(f"{e}; its output:\n{output[-3000:]}") from e
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def static_server(folder: str):
    """``python -m http.server`` on ``folder``, exactly as the docs tell users to serve the page."""
    port = free_port()
    return serving([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", folder], port)


@contextlib.contextmanager
def browser_page(base_url: str):
    """A fresh page in headless Chromium; ``page.outside`` lists every refused non-local request."""
    sync_api = require("playwright.sync_api")
    executable = require_chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.outside = []
            page.console = []

            def route(r):
                if r.request.url.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:")):
                    r.continue_()
                else:
                    page.outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("console", lambda m: page.console.append(m.text))
            page.set_default_timeout(120_000)
            yield page
        finally:
            browser.close()
