"""Screenshot of the ``synthcalib serve`` page for the README: a preview grid and a finished calibration.

    .venv/bin/python scripts/screenshot_serve.py            # writes docs/serve.png

Starts the server on a free loopback port (shipped student, demo classifier), drives the page in
headless Chromium exactly like tests/test_serve.py, and saves a palette PNG (small enough for git).
"""

import argparse
import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from openvino_synthcalib.serve.app import create_app
from openvino_synthcalib.serve.browser import launch
from openvino_synthcalib.serve.catalog import Catalog
from openvino_synthcalib.serve.runner import background_server

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "serve.png")
    parser.add_argument("--seed", type=int, default=3, help="preview seed")
    parser.add_argument("--count", type=int, default=10, help="preview images per class")
    parser.add_argument("--num-samples", type=int, default=300, help="calibration items")
    args = parser.parse_args(argv)

    app = create_app(Catalog.load([], []))  # the shipped student and demo classifier
    with background_server(app) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.set_default_timeout(300_000)
        page.goto(url)
        page.wait_for_function("() => document.getElementById('card').textContent.includes('parameters')")
        page.fill("#count", str(args.count))
        page.fill("#seed", str(args.seed))
        page.wait_for_function(
            "([seed, n]) => { const g = document.getElementById('grid');"
            " return g.dataset.seed === seed && g.querySelectorAll('img').length === n"
            " && !g.classList.contains('loading'); }",
            arg=[str(args.seed), 10 * args.count],
        )
        page.select_option("#preset", "cifar10")
        page.fill("#num-samples", str(args.num_samples))
        page.click("#calibrate")
        page.wait_for_selector("#report", state="visible")
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        png = page.screenshot(full_page=True)
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB, {image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
