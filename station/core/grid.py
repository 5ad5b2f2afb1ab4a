"""The recipe's cell grid over the registered crop: one cell per pin, or a square patch grid."""

from __future__ import annotations

import re
from dataclasses import dataclass

from station.core.errors import StationError


@dataclass(frozen=True)
class CellGrid:
    cols: int
    rows: int
    cell_px: int = 24

    def __post_init__(self) -> None:
        if not (1 <= self.cols <= 64 and 1 <= self.rows <= 64):
            raise StationError(f"grid {self.cols}x{self.rows} is out of range (1..64 per side)")
        if not 4 <= self.cell_px <= 256:
            raise StationError(f"cell size {self.cell_px} px is out of range (4..256)")

    @property
    def size(self) -> tuple[int, int]:
        """Canonical crop size as (width, height)."""
        return self.cols * self.cell_px, self.rows * self.cell_px

    @property
    def n_cells(self) -> int:
        return self.cols * self.rows

    def index(self, col: int, row: int) -> int:
        return row * self.cols + col

    def cell(self, index: int) -> tuple[int, int]:
        """(col, row) of a flat cell index."""
        return index % self.cols, index // self.cols

    def to_dict(self) -> dict:
        return {"cols": self.cols, "rows": self.rows, "cell_px": self.cell_px}

    @classmethod
    def parse(cls, text: str, cell_px: int = 24) -> CellGrid:
        """Parse COLSxROWS as given to `station train --grid`."""
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
        if not match:
            raise StationError(f"grid must be COLSxROWS, such as 3x9, not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)), cell_px)
