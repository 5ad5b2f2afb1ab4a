"""pyqtgraph plots for the workbench panels, made so that nothing of them outlives their panel.

pyqtgraph builds its context menus and control panels without a parent widget; they stay alive
after the window closes until the plot is closed and Python's garbage collector frees them (and
meanwhile count as top-level widgets). `release_plots` closes the plots the pyqtgraph way (which
drops those menus) and deletes them; panels call it when they shut down.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget


def plot_widget(parent: QWidget, title: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(parent, title=title)
    plot.setBackground("#18191c")
    return plot


def release_plots(*plots: pg.PlotWidget) -> None:
    for plot in plots:
        if plot.plotItem is not None:  # not closed yet
            plot.close()
            plot.deleteLater()
