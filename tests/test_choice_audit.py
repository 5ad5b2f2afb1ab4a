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


def test_joined_candidates_are_read_against_their_own_good_scores():
    """Two candidates on different scales, each blind to one of two defects: joined by their z against their own
    held-out good scores, the sum finds both; the pick alone finds one."""
    y = [False] * 4 + [True] * 4
    held = [1.0, 1.1, 0.9, 1.05, 0.95]
    first = _record("rt", (128, 128), (0.99, 0.95, 0.90, 0.90), 0.5)
    second = _record("patch", (256, 256), (0.90, 0.90, 0.90, 0.85), 0.5)
    # the first sees defects 0 and 1 (on its scale of about 1), the second 2 and 3 (on a scale of about 100)
    seen, unseen = [9, 8, 9, 8], [1, 1.05, 0.95, 1]  # synthetic defects on the first's scale
    first["scores"] = {"held": held, "defective": y, "real": [1, 1.1, 0.9, 1, 9, 8, 1, 1.05],
                       "kinds": {"spot": seen, "scratch": seen, "pasted": unseen, "smudge": unseen}}
    second["scores"] = {"held": [100 * h for h in held], "defective": y,
                        "real": [100, 105, 95, 110, 100, 98, 900, 700],
                        "kinds": {"spot": [100 * v for v in unseen], "scratch": [100 * v for v in unseen],
                                  "pasted": [100 * v for v in seen], "smudge": [100 * v for v in seen]}}
    table = audit.joined([first, second]).splitlines()
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[1] == "rt 128x128 0.500"  # the rule's pick: the better worst kind
    assert float(cells[2]) == 1.0  # top two, summed: both defects found above every good part
    assert float(cells[2]) > float(cells[1].split()[-1])
    assert table[-1].startswith("| mean | 0.500 | 1.000")
    # the synthetic kinds say the pair sees every kind (worst kind 1.0 against the pick's 0.90): joined
    assert cells[-1].startswith("1.000 (patch 256x256 joined, worst kind 0.900 -> 1.000)")
    # where the second is blind to the kinds the first misses, joining does not pass the margin: the pick stays
    second["scores"]["kinds"] = {k: [100 * v for v in unseen] for k in first["scores"]["kinds"]}
    cells = [c.strip() for c in audit.joined([first, second]).splitlines()[2].strip("|").split("|")]
    assert cells[-1] == "0.500"
    no_scores = _record("rt", (128, 128), (0.9, 0.9, 0.9, 0.9), 0.8, name="old")
    assert audit.joined([no_scores]).startswith("no record with scores")  # written before the scores were kept
