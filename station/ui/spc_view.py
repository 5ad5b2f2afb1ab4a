"""The per-pin SPC view: a map of the pins coloured by how far each one's EWMA has gone toward its limit,
and the control chart of the pin picked (click a pin; the newest alarmed pin is shown by itself).

`SpcMonitor` charts every result the window receives (station.core.spc.PinSpc) from the start and hands a
drift alarm to `alarm_raised`; the view, built only when someone opens it, shows the monitor."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from station.core.spc import PinSpc
from station.ui.live_service import LiveService
from station.ui.workbench.plots import release_plots

# status 0 (at the centre) green, 1 (at the limit) red; below the centre stays green
_COLOURS = pg.ColorMap([0.0, 0.5, 0.75, 1.0], [(40, 150, 80), (60, 180, 90), (240, 200, 60), (220, 60, 50)])


class SpcMonitor(QObject):
    """The live line's pin charts: fed by `results_ready`, started afresh when the recipe changes."""

    alarm_raised = Signal(str)  # a line for the operator: which pin drifts
    alarmed = Signal(object)  # the DriftAlarm, for the view to show that pin

    def __init__(self, service: LiveService, spc: PinSpc | None = None, parent=None) -> None:
        super().__init__(parent)
        self.spc = spc or PinSpc()
        self.changed = False  # parts came in since the view last drew
        service.results_ready.connect(self.add_results)
        service.recipe_changed.connect(self.restart)

    def add_results(self, items) -> None:
        now = datetime.now(timezone.utc)
        for item in items:
            result = item.result
            if result is None or result.cell_scores is None:
                continue
            self.spc.unit = result.cell_unit
            for alarm in self.spc.add(result.cell_scores, result.verdict.value == "OK", now):
                self.alarmed.emit(alarm)
                self.alarm_raised.emit(alarm.describe())
            self.changed = True

    def restart(self) -> None:
        """A new recipe scores differently: the charts start again from a new baseline."""
        self.spc = PinSpc(self.spc.settings, self.spc.history, self.spc.unit)
        self.changed = True


class SpcView(QWidget):
    def __init__(self, monitor: SpcMonitor, parent=None) -> None:
        super().__init__(parent)
        self.monitor = monitor
        self.selected: tuple[int, int] | None = None
        self._dirty = True
        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.map = pg.PlotWidget(self)
        self.map.setAspectLocked(True)
        self.map.invertY(True)
        self.map.hideAxis("left")
        self.map.hideAxis("bottom")
        self.map.setMouseEnabled(False, False)
        self.map.setMenuEnabled(False)
        self.map.setFixedWidth(170)
        self.image = pg.ImageItem()
        self.map.addItem(self.image)
        self.pick = pg.ScatterPlotItem(size=14, symbol="s", pen=pg.mkPen("w", width=2), brush=None)
        self.map.addItem(self.pick)
        self.map.scene().sigMouseClicked.connect(self._on_map_click)
        self.chart = pg.PlotWidget(self)
        self.chart.setLabel("left", "cell score (log10)")
        self.chart.setLabel("bottom", "part")
        # no pyqtgraph legend: it leaves parentless menus behind when the window closes; the title says it
        self.chart.setTitle("grey: parts · blue: EWMA · red dashed: limit · green: centre (good parts)")
        self.points = self.chart.plot([], [], pen=None, symbol="o", symbolSize=3, symbolBrush=(170, 170, 170),
                                      symbolPen=None, name="part")
        self.ewma_curve = self.chart.plot([], [], pen=pg.mkPen((60, 140, 230), width=2), name="EWMA")
        self.limit_curve = self.chart.plot([], [], pen=pg.mkPen((220, 60, 50), width=1.5, style=Qt.PenStyle.DashLine),
                                           name="limit")
        self.centre_line = pg.InfiniteLine(angle=0, pen=pg.mkPen((60, 180, 90), width=1))
        self.chart.addItem(self.centre_line)
        body = QHBoxLayout()
        body.addWidget(self.map)
        body.addWidget(self.chart, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.header)
        layout.addLayout(body, 1)
        monitor.alarmed.connect(self._on_alarm)
        self._timer = QTimer(self)  # drawn 4 times a second at most, not per part
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    @property
    def spc(self) -> PinSpc:
        return self.monitor.spc

    def _on_alarm(self, alarm) -> None:
        self.selected = alarm.cell
        self._dirty = True

    def shutdown(self) -> None:
        """Stop drawing and free pyqtgraph's parentless menus (the window calls this when it closes)."""
        self._timer.stop()
        if self.chart is None:
            return
        release_plots(self.map, self.chart)
        # the plot items keep their view boxes (and those their parentless menus) alive: let them all go
        self.map = self.chart = self.image = self.pick = None
        self.points = self.ewma_curve = self.limit_curve = self.centre_line = None

    def select(self, cell: tuple[int, int]) -> None:
        self.selected = cell
        self._dirty = True
        self.refresh()

    def _on_map_click(self, event) -> None:
        if self.spc.shape is None or self.image is None:
            return
        point = self.image.mapFromScene(event.scenePos())
        col, row = int(np.floor(point.x())), int(np.floor(point.y()))
        rows, cols = self.spc.shape
        if 0 <= col < cols and 0 <= row < rows:
            self.select((col, row))

    def refresh(self) -> None:
        if self.chart is None:  # shut down with its window
            return
        spc = self.spc
        title = f"SPC \u2013 drift of each {spc.unit}"  # a pin of the demo line, an area of a free-form part
        if self.isWindow() and self.windowTitle() != title:
            self.setWindowTitle(title)
        if not spc.ready:
            self.header.setText(f"SPC: collecting the baseline, {spc.baseline_count} of "
                                f"{spc.settings.baseline_parts} good parts (limits come from their spread).")
            self.image.clear()
            self._set_chart([], [], [], None)
            return
        if not (self._dirty or self.monitor.changed):
            return
        self._dirty = self.monitor.changed = False
        status = spc.status()
        self.image.setImage(np.clip(np.nan_to_num(status.T, nan=0.0), 0.0, 1.0), levels=(0.0, 1.0),
                            lut=_COLOURS.getLookupTable(0.0, 1.0, 256))
        alarmed = spc.alarmed_cells()
        if self.selected is None or self.selected[1] >= status.shape[0] or self.selected[0] >= status.shape[1]:
            r, c = np.unravel_index(int(np.nanargmax(status)), status.shape)
            self.selected = (int(c), int(r))
        c, r = self.selected
        self.pick.setData([c + 0.5], [r + 0.5])
        chart = spc.charts[(c, r)]
        self._set_chart(chart.values, chart.ewma, chart.upper, float(spc.centre[r, c]))
        lines = [f"SPC: {spc.parts} parts charted; {spc.unit} {c},{r} shown (click a {spc.unit} to change)."]
        if alarmed:
            lines.append("<b style='color:#ff5a5a'>Drifting toward NG: " +
                         ", ".join(f"{spc.unit} {a},{b}" for a, b in alarmed) + "</b>")
        elif spc.alarms:
            lines.append(f"Last alarm: {spc.alarms[-1].describe()}")
        else:
            lines.append(f"No {spc.unit} drifting.")
        self.header.setText("<br>".join(lines))

    def _set_chart(self, values, ewma, upper, centre: float | None) -> None:
        start = max(self.spc.parts - len(ewma), 0)
        x = np.arange(start, start + len(ewma))
        values = np.asarray(values, float)
        seen = np.isfinite(values)  # a cell that was not scored has no point
        self.points.setData(x[seen], values[seen])
        self.ewma_curve.setData(x, np.asarray(ewma, float))
        self.limit_curve.setData(x, np.asarray(upper, float))
        self.centre_line.setVisible(centre is not None)
        if centre is not None:
            self.centre_line.setValue(centre)
