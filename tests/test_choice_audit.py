"""scripts/choice_audit.py's table of rules, on records made here (no set read, nothing fitted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script():
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("choice_audit", REPO / "scripts" / "choice_audit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


audit = _script()


def _record(engine, crop, kinds, real, name="part", way="whole"):
    return {"set": name, "way": way, "engine": engine, "crop": list(crop), "held": 30,
            "kinds": dict(zip(("spot", "scratch", "pasted", "smudge"), kinds)), "real": real}


def test_each_rule_takes_its_own_candidate_and_the_shortfall_is_against_the_best_on_real_defects():
    records = [_record("rt", (128, 128), (0.99, 0.95, 0.90, 0.70), 0.80),
               # a worse worst kind but a better mean: the mean of kinds takes it, the worst kind does not
               _record("patch", (256, 256), (1.00, 1.00, 1.00, 0.66), 0.95)]
    table = audit.rules(records).splitlines()
    row = next(line for line in table if line.startswith("| part, whole"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "patch 256x256 0.950"  # the best on the real defects
    assert cells[2] == "rt 128x128 0.800"  # the station's rule: the worst kind, the simpler on a near tie
    assert cells[3] == "rt 128x128 0.800"
    assert cells[4] == "patch 256x256 0.950"  # mean of kinds
    assert table[-1].split("|")[3].strip() == "-0.150"  # the station's rule's shortfall


def test_the_station_rule_leaves_out_a_kind_no_candidate_sees():
    # smudges at chance for both: the rule reads the other kinds, where patch is better by more than the margin
    records = [_record("rt", (128, 128), (0.90, 0.85, 0.90, 0.52), 0.70),
               _record("patch", (256, 256), (0.97, 0.95, 0.96, 0.48), 0.90)]
    row = next(line for line in audit.rules(records).splitlines() if line.startswith("| part, whole"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "patch 256x256 0.900"  # the station's rule
    assert cells[3] == "rt 128x128 0.700"  # the plain worst kind counts the smudge
