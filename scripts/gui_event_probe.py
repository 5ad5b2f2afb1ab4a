"""Which Qt events the window spends long on, and which widgets change size, while both engines run.

Runs the two-engine GUI bench (`station bench --gui` with the bundled ViT and RT-attention recipes) inside a
QApplication whose `notify` times every event: it prints the bench's summary, every event that took longer
than --slow-ms in the GUI thread, and how many times each kind of widget was resized after start-up. A
window whose layout is stable resizes nothing while the line runs; a widget that changes size with every
result lays the window out again (docs/gui-bench.md, "the right column").

    QT_QPA_PLATFORM=offscreen python scripts/gui_event_probe.py --seconds 240

Timing every event costs a little: the bench's own figures under the probe are not the bench's figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

RECIPES = ["resources/recipes/vit", "resources/recipes/rt-attention"]


class ProbeApp(QApplication):
    def __init__(self, argv: list[str], slow_ms: float) -> None:
        super().__init__(argv)
        self.t0, self.slow_ms = time.perf_counter(), slow_ms
        self.slow: list[tuple[float, float, str, str]] = []
        self.resizes: list[tuple[float, str]] = []
        self.totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])  # event: [count, ms]
        self.depth = 0

    def notify(self, receiver, event) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.Type.Resize:
            self.resizes.append((time.perf_counter() - self.t0, type(receiver).__name__))
        start = time.perf_counter()
        self.depth += 1
        try:
            return super().notify(receiver, event)
        finally:
            self.depth -= 1
            ms = (time.perf_counter() - start) * 1e3
            if self.depth == 0:  # events delivered from the loop, not from inside another event
                total = self.totals[f"{kind.name} to {type(receiver).__name__}"]
                total[0] += 1
                total[1] += ms
            if ms > self.slow_ms:
                self.slow.append((round(start - self.t0, 2), round(ms, 1), kind.name, type(receiver).__name__))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--slow-ms", type=float, default=12.0, help="events longer than this are listed")
    ap.add_argument("--settle-s", type=float, default=2.0,
                    help="resizes within this many seconds of the window's first are its start-up")
    args = ap.parse_args(argv)
    app = ProbeApp(sys.argv[:1], args.slow_ms)
    from station.ui.bench import run_gui_bench

    report = run_gui_bench("demo", RECIPES, args.seconds, 30.0)
    print(json.dumps({k: report.get(k) for k in ("displayed_fps", "stalls_over_50ms", "longest_stall")}))
    print(f"events over {args.slow_ms:g} ms (s after start, ms, event, receiver):")
    for row in app.slow:
        print("  ", row)
    print("GUI-thread time per event delivered from the loop (count, total ms, mean ms), the 8 costliest:")
    for name, (n, ms) in sorted(app.totals.items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"   {name}: {n}, {ms:.0f} ms, {ms / n:.2f} ms")
    shown = app.resizes[0][0] if app.resizes else 0.0
    later = collections.Counter(name for t, name in app.resizes if t > shown + args.settle_s)
    print(f"widget resizes after start-up (from {args.settle_s:g} s after the window's first): "
          f"{sum(later.values())}", dict(later.most_common(8)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
