"""Test setup: Qt runs offscreen (set here, not by the person running the tests), and shared fixtures."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the result log and image archive of windows opened by tests go to a throwaway folder
os.environ["STATION_DATA_DIR"] = tempfile.mkdtemp(prefix="station-test-data-")
os.environ.setdefault("STATION_WORKBENCH_DIR", tempfile.mkdtemp(prefix="station-test-workbench-"))
# the station key that seals recipes, PIN file and audit log: one throwaway key for the whole run (tests that
# point STATION_CONFIG_DIR elsewhere keep it, so the recipes the session fixtures saved stay trusted)
os.environ["STATION_KEY_DIR"] = tempfile.mkdtemp(prefix="station-test-key-")

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
import torch  # noqa: E402,F401 - in the main thread, before any test's threads: a CI run's first import of torch, made
# by the GUI thread while a line's threads ran, raised torch's "kernel registered twice" warning, and every later
# import in that run failed

from postgres_server import postgres_server, postgres_url  # noqa: E402,F401 - fixtures
from synthetic import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small drawn connector data set with train and test splits (seconds to make)."""
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root / "train", {"good": 30, "pushed": 8, "tilted": 8, "missing": 8}, seed=1)
    write_dataset(root / "test", {"good": 20, "pushed": 10, "tilted": 10, "missing": 10}, seed=2)
    return root


@pytest.fixture(scope="session")
def synthetic_recipe(synthetic_data, tmp_path_factory) -> Path:
    """An RT recipe fitted on the synthetic data set."""
    from station.core.dataset import load_dataset
    from station.core.grid import CellGrid
    from station.core.training import train_recipe

    out = tmp_path_factory.mktemp("recipes") / "rt"
    recipe, _ = train_recipe(load_dataset(synthetic_data, "train"), "rt", CellGrid(3, 9), "synthetic-rt")
    recipe.save(out)
    return out


@pytest.fixture(autouse=True)
def no_leaked_top_level_widgets(request):
    """Fail a Qt test that leaves a top-level widget behind (pytest-qt closes registered ones first), and
    collect its objects in reference cycles here, in the main thread, not in whichever worker thread of a
    later test allocates next (shiboken then crashed the process; station/ui/collector.py)."""
    if not {"qtbot", "qapp"} & set(request.fixturenames):
        yield
        return
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = request.getfixturevalue("qapp")
    before = {id(w) for w in app.topLevelWidgets()}
    yield
    for _ in range(3):  # deleteLater() needs the event loop; run the deferred deletions now
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QApplication.processEvents()
    leaked = [w for w in app.topLevelWidgets() if id(w) not in before and type(w).__name__ != "QTipLabel"]
    names = ", ".join(f"{type(w).__name__}({w.objectName() or w.windowTitle()!r})" for w in leaked)
    for w in leaked:
        w.close()
        w.deleteLater()
    gc.collect()
    if leaked:
        pytest.fail(f"top-level widgets leaked by this test: {names}")


_MODAL_CALLS = {"QMessageBox": ("warning", "critical", "information", "question", "about"),
                "QFileDialog": ("getExistingDirectory", "getOpenFileName", "getSaveFileName"),
                "QInputDialog": ("getText", "getItem", "getInt")}


@pytest.fixture(autouse=True)
def no_blocking_dialogs(request, monkeypatch):
    """A modal box offscreen waits for a click that never comes: a test that opened one (often while closing
    its window after a failed assertion) hung CI for its whole 90 minutes. Here such a box answers at once
    (Cancel, nothing chosen) and the test fails naming it; a test that expects one patches it itself."""
    if not {"qtbot", "qapp"} & set(request.fixturenames) and "PySide6.QtWidgets" not in sys.modules:
        yield
        return
    from PySide6 import QtWidgets

    opened: list[str] = []

    def refuse(kind: str, name: str):
        def answer(*args, **_kwargs):
            texts = [a for a in args if isinstance(a, str)]
            opened.append(f"{kind}.{name}({' / '.join(t[:80] for t in texts)})")
            if kind == "QMessageBox":
                return QtWidgets.QMessageBox.StandardButton.Cancel
            if kind == "QInputDialog":
                return ("", False) if name != "getInt" else (0, False)
            return "" if name == "getExistingDirectory" else ("", "")
        return staticmethod(answer)

    for kind, names in _MODAL_CALLS.items():
        for name in names:
            monkeypatch.setattr(getattr(QtWidgets, kind), name, refuse(kind, name))

    def exec_refused(dialog, *_args):
        opened.append(f"{type(dialog).__name__}.exec({dialog.windowTitle()!r})")
        return 0

    monkeypatch.setattr(QtWidgets.QDialog, "exec", exec_refused)
    yield
    if opened:
        pytest.fail("a modal dialog opened that the test did not expect (offscreen it would wait forever): "
                    + "; ".join(opened))
