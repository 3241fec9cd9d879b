"""Regenerates docs/images/web-page.png and docs/images/app.png from a checkpoint (the demo's):

    python scripts/docs_screenshots.py demo_output/demo_params_0000600.safetensors

Uses the test suite's browser helpers (headless Debian Chromium through Playwright)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from browser import browser_page, free_port, serving, static_server  # noqa: E402
from ugatit_rs import demo, export  # noqa: E402
from ugatit_rs.translate import Translator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        photo = os.path.join(tmp, "photo.png")
        Image.fromarray(demo.demo_image("A", 96, seed=1, index=3)).save(photo)
        generator = Translator.from_checkpoint(args.checkpoint, "A2B").generator
        site = export.web(generator, os.path.join(tmp, "site"), title="ugatit-rs demo: photo → cartoon")
        with static_server(site) as url, browser_page(url) as page:
            page.set_viewport_size({"width": 1000, "height": 760})
            page.goto(url + "/")
            page.wait_for_function("document.body.dataset.state === 'ready'")
            page.set_input_files("#file", photo)
            page.wait_for_function("document.body.dataset.state === 'done'")
            page.screenshot(path=os.path.join(args.out, "web-page.png"), full_page=True)
        port = free_port()
        command = [sys.executable, "-m", "ugatit_rs", "serve", "--checkpoint", args.checkpoint, "--port", str(port)]
        with serving(command, port, timeout=180) as url, browser_page(url) as page:
            page.set_viewport_size({"width": 1200, "height": 800})
            page.goto(url + "/")
            page.locator("#uploads input[type=file]").set_input_files([photo])
            page.click("#translate")
            page.wait_for_function("document.getElementById('message').innerText.includes('Translated')")
            page.wait_for_selector("#gallery img")
            page.wait_for_timeout(500)
            page.screenshot(path=os.path.join(args.out, "app.png"), full_page=True)
    print(f"wrote {args.out}/web-page.png and app.png")


if __name__ == "__main__":
    main()
