"""The full-size result's text: what the operator reads beside the image."""

import numpy as np

from station.core.inspector import InspectionResult
from station.core.live import LiveResult
from station.core.sources import Frame
from station.core.verdict import Verdict
from station.ui.result_dialog import describe


def item(pixel_map):
    result = InspectionResult(Verdict.NG, "defect", 614.0, np.zeros((21, 16)), (13, 20), {}, "sha256:9887e9864f7d00",
                              pixel_map=pixel_map)
    return LiveResult(1, Frame(None, 0, 0.0, "hole_010.png"), result, None, None, {}, 0.0)


def test_a_free_form_part_names_its_most_suspicious_cell_and_a_pin_part_its_pin():
    """A tyre's full-size NG said "most suspicious pin": a free-form part (mapped per pixel) has cells."""
    assert "most suspicious cell: column 14, row 21" in describe(item(np.zeros((168, 128), np.float32)))
    assert "most suspicious pin: column 14, row 21" in describe(item(None))
