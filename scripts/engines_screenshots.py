"""Save screenshots of the window on its default line (the bundled ViT and RT-attention recipes, cross-checked):
an agreement, a disagreement (REVIEW naming the pin and what each engine said), and one part under each
engine's map (the ViT's attention, RT-attention's cell scores).

    python scripts/engines_screenshots.py [--out docs/screenshots]

Runs offscreen where there is no display, with its settings and result log in a throw-away folder. The parts
are found on the bundled demo test split by running the line itself (then on its train split, when the two
engines agree on every test part).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="station-engine-shots-"))
    os.environ.setdefault("STATION_CONFIG_DIR", str(scratch / "config"))
    os.environ.setdefault("STATION_DATA_DIR", str(scratch / "data"))

    from station.core.dataset import load_dataset
    from station.core.imageio import read_image
    from station.core.resources import demo_dir
    from station.core.settings import StationSettings
    from station.ui.app import create_window
    from station.ui.bench import offscreen_app

    app = offscreen_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    probe = create_window("demo", None, StationSettings(), save_settings=False, start=False)
    line = probe.service.pipeline.inspector
    agree = disagree = None
    samples = [*load_dataset(demo_dir(), "test").samples, *load_dataset(demo_dir(), "train").samples]
    for sample in samples:  # the line itself finds the two parts
        result = line.inspect(read_image(sample.path))
        if result.disagreement and disagree is None:
            disagree = sample.path
        elif not result.disagreement and result.verdict.value == "NG" and agree is None:
            agree = sample.path
        if agree and disagree:
            break
    probe.close()
    probe.deleteLater()
    shots = {}
    for name, path, maps in (("engines-agree", agree, [""]), ("engines-disagree", disagree, [""]),
                             ("engines-map", agree, ["vit", "rt-attention"])):
        if path is None:
            print(f"no {name} part found on the demo's test or train split", file=sys.stderr)
            continue
        folder = scratch / name  # the demo line on this one part, over and over (a replay would end and stop)
        folder.mkdir()
        (folder / path.name).write_bytes(path.read_bytes())
        window = create_window(f"demo:{folder}", None, StationSettings(demo_fps=5), save_settings=False, start=True)
        window.resize(1280, 800)
        window.show()
        deadline = time.monotonic() + 60
        while window.verdict_panel.verdict == "IDLE" and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        for engine in maps:
            window.live_view.choose_map(engine)
            for _ in range(20):
                app.processEvents()
                time.sleep(0.02)
            target = out / (f"{name}-{engine}.png" if engine else f"{name}.png")
            window.grab().save(str(target))
            shots[target.name] = {"image": path.name, "verdict": window.verdict_panel.verdict,
                                  "detail": window.verdict_panel.detail_label.text()}
        window.close()
        window.deleteLater()
        app.processEvents()
    for file, what in shots.items():
        print(file, what)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
