"""How long the window's two thumbnail lists take to take in a result, offscreen (docs/gui-bench.md).

The last-NG list and the strip of recent results are each given one NG result per round (a 72 x 64 thumbnail,
and 2 MB of arrays standing in for the frame and overlay a result holds, freed when the item leaves the list),
then flushed and the events processed; the time of each flush is printed as p50, p99 and maximum.

    QT_QPA_PLATFORM=offscreen python scripts/thumb_lists_bench.py [--rounds 3000]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication

from station.core.verdict import Verdict


class _Service(QObject):
    results_ready = Signal(object)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3000)
    args = ap.parse_args(argv)
    app = QApplication([])
    from station.ui.last_ng_list import LastNgList  # noqa: PLC0415 - after the QApplication
    from station.ui.recent_strip import RecentStrip  # noqa: PLC0415

    service = _Service()
    lists = {"last NG": LastNgList(service), "recent strip": RecentStrip(service)}
    for widget in lists.values():
        widget.show()
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in lists}
    for i in range(args.rounds):
        item = SimpleNamespace(thumb=rng.integers(0, 255, (72, 64, 3), dtype=np.uint8), error="",
                               result=SimpleNamespace(verdict=Verdict.NG, label="bent"),
                               frame=SimpleNamespace(name=f"frame{i}.png"),
                               held=[np.ones((480, 640, 4), np.uint8), np.ones((480, 640, 3), np.uint8)])
        for name, widget in lists.items():
            widget.add_results([item])
            t = time.perf_counter()
            widget._flush()
            app.processEvents()
            times[name].append((time.perf_counter() - t) * 1000)
    for name, values in times.items():
        v = np.array(values)
        print(f"{name}: p50 {np.median(v):.2f} ms, p99 {np.percentile(v, 99):.2f} ms, max {v.max():.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
