#!/usr/bin/env python
"""Screenshots for the README: small PNGs of the report page and of MLflow / DVC pages.

    .venv/bin/python scripts/screenshots.py                        # docs/report.png
    .venv/bin/python scripts/screenshots.py \\
        --mlflow 'http://127.0.0.1:5000/#/experiments/1/runs' \\
        --click 'button[aria-label=Close]' --page plots=dvc_plots/index.html

Each page is NAME=TARGET (TARGET a file or an http(s) URL) and becomes docs/NAME.png; the
report page (reports/index.html) is ``report``, ``--mlflow URL`` is ``mlflow_runs``.
``--click SELECTOR`` clicks what matches on every page before its shot, where something does
(above: closes the MLflow UI's assistant panel). Pages read from files are loaded with the
network blocked, as a reader opens them offline; an http(s) page may fetch from its own server
only. The browser is Debian's Chromium (/usr/bin/chromium) driven by Playwright, never a
downloaded one. The PNGs are cut to 256 colours: a 1280-pixel-wide page weighs tens of
kilobytes, not megabytes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
REPORT = "reports/index.html"


def _target_url(target: str) -> str:
    if urlparse(target).scheme in ("http", "https", "file"):
        return target
    path = Path(target).resolve()
    if not path.is_file():
        sys.exit(f"screenshots: {target} not found (run `dvc repro` / `make plots` first)")
    return path.as_uri()


def _small_png(png: bytes) -> bytes:
    """``png`` as a 256-colour palette PNG: screenshots of flat pages lose nothing visible."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _only_from(origin: str | None):
    """A request handler: file:// and data: pass, http(s) only to ``origin``, the rest aborted."""

    def handle(route) -> None:
        url = urlparse(route.request.url)
        own = origin is not None and f"{url.scheme}://{url.netloc}" == origin
        if url.scheme in ("file", "data") or own:
            route.continue_()
        else:
            route.abort()

    return handle


def shoot(
    pages: dict[str, str],
    out: Path,
    *,
    width: int,
    height: int,
    full_page: bool,
    wait_ms: int,
    clicks: list[str],
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        sys.exit(f"screenshots: {CHROMIUM} is missing: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        for name, target in pages.items():
            url = _target_url(target)
            parsed = urlparse(url)
            origin = f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme != "file" else None
            context = browser.new_context(viewport={"width": width, "height": height})
            context.route("**/*", _only_from(origin))
            page = context.new_page()
            page.goto(url, wait_until="load", timeout=60_000)
            if origin:
                # A served page (the MLflow UI) fills itself in after load; it also polls its
                # server, so "no requests" may never come: wait for it 15 s at most.
                with contextlib.suppress(PlaywrightTimeout):
                    page.wait_for_load_state("networkidle", timeout=15_000)
            page.wait_for_timeout(wait_ms)
            for selector in clicks:
                if page.locator(selector).count():
                    page.locator(selector).first.click(timeout=5_000)
            if clicks:
                page.wait_for_timeout(500)
            png = _small_png(page.screenshot(full_page=full_page))
            path = out / f"{name}.png"
            path.write_bytes(png)
            print(f"screenshots: {path} ({len(png) >> 10} KiB) from {url}")
            context.close()
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlflow", metavar="URL", help="an MLflow UI page: docs/mlflow_runs.png")
    parser.add_argument(
        "--page", action="append", default=[], metavar="NAME=TARGET",
        help="another page (file or URL) to docs/NAME.png; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--click", action="append", default=[], metavar="SELECTOR",
        help="a CSS selector to click before each shot, where it matches; repeatable",
    )  # fmt: skip
    parser.add_argument("--no-report", action="store_true", help=f"leave out {REPORT}")
    parser.add_argument("--out", default="docs", type=Path, help="folder of the PNGs (docs)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900, help="the viewport's height")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the top")
    parser.add_argument("--wait-ms", type=int, default=2000, help="settle time after loading")
    args = parser.parse_args(argv)

    pages = {} if args.no_report else {"report": REPORT}
    if args.mlflow:
        pages["mlflow_runs"] = args.mlflow
    for entry in args.page:
        name, sep, target = entry.partition("=")
        if not sep or not name or "/" in name:
            parser.error(f"--page {entry!r}: expected NAME=TARGET, NAME without '/'")
        pages[name] = target
    if not pages:
        parser.error("nothing to shoot: give --mlflow or --page")
    shoot(
        pages, args.out, width=args.width, height=args.height, full_page=args.full_page,
        wait_ms=args.wait_ms, clicks=args.click,
    )  # fmt: skip


if __name__ == "__main__":
    main()
