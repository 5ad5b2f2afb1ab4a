"""The verdict, readable from three metres: OK green, NG red with the defect, REVIEW amber.

When the line is not producing verdicts (stopped, camera lost, stalled or frozen, no recipe) the panel says so in grey
instead of keeping an old verdict on screen that an operator could take for the current part.
A verdict is shown at once, but marked "not yet logged" until its row is safe in the result log.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from station.core.inspector import BAD_FRAME, NO_PART, light_note
from station.core.live import LiveResult
from station.core.verdict import Verdict
from station.ui.live_service import LiveService

DETAIL_PX, DETAIL_PAD = 26, 6  # the detail line's font size and padding
DETAIL_LINES = 2  # lines the detail keeps room for: "good part" and an NG's defect and pin take one or two, and
# a detail that changed its height with every OK and NG laid the whole right column out again (docs/gui-bench.md)
_QUEUED = ("not yet logged\u2026", "background:#6b4e00; color:white;")  # the badge of a row on its way
COLOURS = {"OK": ("#0a8f3c", "white"), "NG": ("#c62020", "white"), "REVIEW": ("#f0a800", "black"),
           "IDLE": ("#4a4d55", "#e8e8e8")}


class VerdictPanel(QWidget):
    def __init__(self, service: LiveService, parent=None) -> None:
        super().__init__(parent)
        self.service = service
        self.verdict_label = QLabel(self)
        self.detail_label = QLabel(self)
        self.log_label = QLabel(self)  # the shown verdict's row is not (yet) in the result log
        self.log_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # at 30 parts a second the badge comes and goes with every part: its space stays, so showing it is a
        # repaint of the badge, not a new layout of the panel (and a repaint of the big verdict with it)
        keep = self.log_label.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        self.log_label.setSizePolicy(keep)
        self._log_shown: tuple[str, str] | None = None  # (text, style) the badge was last given
        self._set_log_badge(*_QUEUED)  # styled from the start, so the space it keeps is its own
        self.log_label.hide()
        for label in (self.verdict_label, self.detail_label):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
        self.verdict_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.verdict_label.setMinimumHeight(150)
        detail_font = QFont(self.detail_label.font())
        detail_font.setPixelSize(DETAIL_PX)
        detail_font.setWeight(QFont.Weight.DemiBold)
        line = QFontMetrics(detail_font).lineSpacing()
        self.detail_label.setMinimumHeight(DETAIL_LINES * line + 2 * DETAIL_PAD + 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.verdict_label, 1)
        layout.addWidget(self.detail_label)
        layout.addWidget(self.log_label)
        self._item: LiveResult | None = None  # the result on screen, whose log state the badge shows
        self.verdict = "IDLE"
        self._style: tuple[str, int] | None = None
        self._show("IDLE", "STOPPED", "Press Start (F5)")
        service.results_ready.connect(self.show_results)
        service.run_state_changed.connect(self._on_run_state)
        service.state_changed.connect(self._on_source_state)
        service.results_committed.connect(self.refresh_log_state)
        service.logging_changed.connect(self._on_logging)

    def _show(self, key: str, big: str, detail: str) -> None:
        self.verdict = key
        size = 96 if len(big) <= 6 else 54
        if (key, size) != self._style:  # restyling is the costly part; at 30 results a second, only on change
            self._style = (key, size)
            bg, fg = COLOURS[key]
            self.verdict_label.setStyleSheet(
                f"background:{bg}; color:{fg}; font-size:{size}px; font-weight:800; border-radius:6px 6px 0 0;")
            self.detail_label.setStyleSheet(f"background:{bg}; color:{fg}; font-size:{DETAIL_PX}px; "
                                            f"font-weight:600; padding:{DETAIL_PAD}px; border-radius:0 0 6px 6px;")
        if self.verdict_label.text() != big:
            self.verdict_label.setText(big)
        if self.detail_label.text() != detail:
            self.detail_label.setText(detail)

    def show_results(self, items: list[LiveResult]) -> None:
        self.show_result(items[-1])

    def refresh_log_state(self) -> None:
        """Mark the verdict on screen until its row is logged (or say that it never will be)."""
        item = self._item
        ticket = None if item is None or item.result is None else item.log
        if ticket is None or ticket.durable:
            self.log_label.hide()
            return
        if ticket.state == "lost":
            self._set_log_badge("\u26a0 NOT LOGGED: this result was lost", "background:#c62828; color:white;")
        elif ticket.state == "held":
            self._set_log_badge("\u26a0 not logged yet: held in memory", "background:#c62828; color:white;")
        else:
            self._set_log_badge(*_QUEUED)
        self.log_label.show()

    def _set_log_badge(self, text: str, style: str) -> None:
        if (text, style) != self._log_shown:  # restyling costs more than the rest of a result: only on change
            self._log_shown = (text, style)
            self.log_label.setText(text)
            self.log_label.setStyleSheet(style + " font-size:18px; font-weight:700; padding:4px;")

    def _on_logging(self, problem: str) -> None:
        results = self.service.results
        if problem and results is not None and results.hold_line:
            self._item = None
            self.log_label.hide()
            self._show("IDLE", "NOT LOGGING", problem)
        self.refresh_log_state()

    def show_result(self, item: LiveResult) -> None:
        self._item = item
        if self.service.results is not None:
            self.refresh_log_state()
        result = item.result
        if result is None:
            if item.error:
                self._show("IDLE", "UNREADABLE", f"{item.frame.name}: {item.error}")
            else:
                self._show("IDLE", "NO RECIPE", self.service.recipe_error or "load a recipe to inspect")
            return
        if result.disagreement:  # a line of several engines that do not agree on this part
            self._show(result.verdict.value, result.verdict.value, disagreement_text(result))
        elif result.verdict is Verdict.OK:
            self._show("OK", "OK", "good part" + agreed(result) + note(result))
        elif result.verdict is Verdict.NG:
            if result.label == NO_PART:
                self._show("NG", "NG", "no part found")
            elif result.label == BAD_FRAME:
                self._show("NG", "NG", result.message)
            else:
                where = f" \u00b7 {result.cell_unit} col {result.top_cell[0] + 1}, row {result.top_cell[1] + 1}" if result.top_cell else ""
                self._show("NG", "NG", f"{result.label}{where}{agreed(result)}{note(result)}")
        else:
            self._show("REVIEW", "REVIEW", "check this part by hand" + note(result))

    def _on_run_state(self, state: str) -> None:
        if state != "running":
            self._item = None
            self.log_label.hide()
        if state == "stopped":
            self._show("IDLE", "STOPPED", "Press Start (F5)")
        elif state == "paused" and self.verdict == "IDLE":
            self._show("IDLE", "PAUSED", "Single shot: F7")

    def _on_source_state(self, state: str, message: str) -> None:
        if state in ("camera lost, reconnecting", "failed"):
            self._item = None
            self.log_label.hide()
            self._show("IDLE", "NO IMAGE", message or state)
        elif state in ("camera stalled", "camera frozen"):  # the last verdict is not the part in front of it
            self._show("IDLE", state.upper(), message or state)


def note(result) -> str:
    """The result's note on a judged part (the light changed), on a line of its own; "" when there is none. Not
    the result's log message: on a line of several engines that is each engine's result as JSON, for the log."""
    text = light_note(result.registered.tone_shift) if result.registered is not None else ""
    return f"\n{text}" if text else ""


def agreed(result) -> str:
    """" · both engines agree" on a line of several engines; "" for one."""
    return f" \u00b7 {len(result.engines)} engines agree" if len(result.engines) > 1 else ""


def disagreement_text(result) -> str:
    """What each engine said, one line each: `vit: NG missing, pin col 2, row 5`."""
    units = {r.cell_unit for r in result.engines.values()}
    unit = units.pop() if len(units) == 1 else "cell"
    lines = ["engines disagree" + (f" on the {unit}" if len({r.verdict for r in result.engines.values()}) == 1 else "")]
    for name, own in result.engines.items():
        if own.verdict is Verdict.OK:
            lines.append(f"{name}: OK")
        else:
            where = f", {own.cell_unit} col {own.top_cell[0] + 1}, row {own.top_cell[1] + 1}" if own.top_cell else ""
            lines.append(f"{name}: {own.verdict.value} {own.label}{where}")
    return "\n".join(lines)
