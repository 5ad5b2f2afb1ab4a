"""Save the screenshots of the install guides: the first start (demo line and its banner, the Help menu), the
About box with the log file's path, and Help > Station doctor.

    python scripts/install_screenshots.py [--out docs/screenshots]

Runs offscreen where there is no display, with its own empty settings and data folders (a first start).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, seconds: float, until=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    args = p.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="station-first-run-"))
    for name in ("CONFIG", "DATA", "WORKBENCH", "KEY"):  # a PC the station has never run on
        os.environ[f"STATION_{name}_DIR"] = str(home / name.lower())
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QMessageBox

    from station.core.logs import setup_logging
    from station.ui.app import open_station
    from station.ui.bench import offscreen_app
    from station.ui.doctor_dialog import DoctorDialog

    app = offscreen_app()
    setup_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    window = open_station()
    window.resize(1280, 800)
    window.show()
    _wait(app, 4)
    saved = [out / "first-start-demo-banner.png"]
    window.grab().save(str(saved[-1]))

    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    help_menu.popup(window.mapToGlobal(QPoint(window.menuBar().actionGeometry(help_menu.menuAction()).x(),
                                              window.menuBar().height())))
    _wait(app, 0.5)
    saved.append(out / "help-menu.png")
    help_menu.grab().save(str(saved[-1]))
    help_menu.hide()

    about = QMessageBox(QMessageBox.Icon.Information, "About the inspection station", window.about_text(),
                        parent=window)
    about.show()
    _wait(app, 0.5)
    saved.append(out / "about-box.png")
    about.grab().save(str(saved[-1]))
    about.close()

    doctor = DoctorDialog(window)
    doctor.show()
    _wait(app, 120, until=lambda: not doctor.job.running)
    _wait(app, 0.3)
    saved.append(out / "station-doctor.png")
    doctor.grab().save(str(saved[-1]))
    doctor.close()
    window.close()
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
