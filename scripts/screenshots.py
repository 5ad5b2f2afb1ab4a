"""Save screenshots of the station window during an NG and an OK verdict (for docs and for review).

    python scripts/screenshots.py [--out docs/screenshots] [--source demo] [--recipe PATH]

Runs offscreen where there is no display. The window runs the line until it shows each verdict, then
pauses and grabs itself, so the picture is what an operator would see at that moment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--source", default="demo")
    p.add_argument("--recipe")
    p.add_argument("--size", default="1280x800")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--fill", type=float, default=4.0,
                   help="seconds the line runs before the first shot (0 for a short folder, which would end first)")
    args = p.parse_args(argv)

    from station.core.settings import StationSettings
    from station.ui.app import create_window
    from station.ui.bench import offscreen_app

    app = offscreen_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    window = create_window(args.source, args.recipe, StationSettings(demo_fps=10), save_settings=False)
    w, h = (int(v) for v in args.size.split("x"))
    window.resize(w, h)
    window.show()
    saved = []
    # let the counters, the strip and the last-NG list fill first, as they would on a running line
    end = time.monotonic() + args.fill
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    for wanted in ("NG", "OK"):
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            while window.verdict_panel.verdict != wanted and time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.005)
            window.service.pause()
            for _ in range(25):  # a frame already in the inspector may still arrive; let it, and the paints
                app.processEvents()
                time.sleep(0.015)
            if window.verdict_panel.verdict == wanted:
                break
            window.service.start()
        if window.verdict_panel.verdict != wanted:
            print(f"no {wanted} verdict within {args.timeout} s", file=sys.stderr)
            continue
        path = out / f"main-window-{wanted.lower()}.png"
        window.grab().save(str(path))
        saved.append(path)
        if wanted == "NG" and window.last_ng.count():
            dialog = window.last_ng.open_item(window.last_ng.item(0))
            app.processEvents()
            dialog_path = out / "last-ng-full-size.png"
            dialog.grab().save(str(dialog_path))
            saved.append(dialog_path)
            dialog.close()
        window.service.start()
    window.close()
    for path in saved:
        print(path)
    return 0 if len(saved) >= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
