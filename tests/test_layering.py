"""DESIGN §3: station.core is usable without Qt. Importing every core module must not load Qt."""

import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "station" / "core"

CHECK = """
import importlib, pkgutil, sys
import station.core
for mod in pkgutil.walk_packages(station.core.__path__, "station.core."):
    importlib.import_module(mod.name)
qt = sorted(m for m in sys.modules if m.split(".")[0] in {"PySide6", "PyQt5", "PyQt6", "pyqtgraph", "superqt", "qtpy"})
print(",".join(qt))
"""


def test_core_imports_no_qt():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"station.core pulled in Qt: {proc.stdout.strip()}"


def test_core_sources_do_not_mention_qt_imports():
    offenders = [p.relative_to(CORE).as_posix() for p in CORE.rglob("*.py")
                 if any(line.lstrip().startswith(("import PySide6", "from PySide6", "import pyqtgraph",
                                                  "from pyqtgraph", "from superqt", "import superqt"))
                        for line in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == []
