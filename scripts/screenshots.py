"""Screenshots of the dashboard's explorer and compare views (for the README), made with headless Chromium.

    python scripts/screenshots.py --tracking-uri sqlite:///mlflow.db --out docs/img/

Writes ``explorer.png`` (the newest run with attribution, its last step, first sample, a target
token hovered) and ``compare.png`` (two runs on the same sample when the store has two runs with
common samples, else two checkpoints of one run; a target token hovered so both sides and the
difference row show its relations). ``--run`` / ``--other-run`` choose the runs, ``--sample`` the
sample. Needs Debian's Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runs(uri: str) -> list:
    from attrib_mlops.tracking import AttributionReader

    return [r for r in AttributionReader(uri).list_runs() if r.n_steps > 0]


def _hover_last_target(page, scope: str, side: str) -> None:
    toks = page.locator(f'{scope} .attrib-tok[data-side="{side}"][data-role="target"]')
    toks.last.hover()
    page.locator(f'{scope} [data-role="status"][data-hover^="target:"]').wait_for()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Screenshots of the dashboard's explorer and compare views.")
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--run", help="run of the explorer (default: the newest run with attribution)")
    ap.add_argument("--other-run", help="second run of the compare view (default: the next run with attribution)")
    ap.add_argument("--sample", help="sample id (default: the run's first sample)")
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args(argv)

    runs = _runs(args.tracking_uri)
    if not runs:
        print(f"error: no run with attribution in {args.tracking_uri}", file=sys.stderr)
        return 2
    run = args.run or runs[0].run_id
    other = args.other_run or next((r.run_id for r in runs if r.run_id != run), None)
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    from panel_app.app import serve

    port = _port()
    server = serve(args.tracking_uri, port=port, threaded=True, refresh_seconds=0, verbose=False)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=10).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
            page.set_default_timeout(60_000)
            query = f"?tab=explorer&run={run}" + (f"&sample={args.sample}" if args.sample else "")
            page.goto(url + "/" + query)
            page.locator(".explorer-tokens .attrib-tok").first.wait_for()
            page.locator(".explorer-heatmaps .bk-Canvas").first.wait_for()
            _hover_last_target(page, ".explorer-tokens", "a")
            page.screenshot(path=str(args.out / "explorer.png"), full_page=True)
            print(f"wrote {args.out / 'explorer.png'} (run {run})")

            page.locator(".bk-tab", has_text="Compare").first.click()
            if other:
                page.locator(".compare-kind button", has_text="two runs").click()
                select = page.locator(".compare-right-run select")
                select.locator("option", has_text=other[:8]).first.wait_for(state="attached")
                labels = select.locator("option").all_text_contents()
                select.select_option(label=next(lb for lb in labels if other[:8] in lb))
            page.locator('.compare-tokens .attrib-tok[data-side="diff"]').first.wait_for()
            page.locator(".compare-heatmaps .bk-Canvas").first.wait_for()
            _hover_last_target(page, ".compare-tokens", "a")
            page.screenshot(path=str(args.out / "compare.png"), full_page=True)
            print(f"wrote {args.out / 'compare.png'} ({'runs ' + run + ' vs ' + other if other else 'checkpoints'})")
            browser.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
