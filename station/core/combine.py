"""How the verdicts of several engines on one part become the line's verdict (DESIGN 2.3).

- `cross-check` (the default): the engines agree -> that verdict; they disagree, in the verdict or, for a
  part they both reject, in the defective pin -> REVIEW, naming the pin and what each engine said.
- `either-ng`: the worst verdict wins (one engine's NG rejects the part; REVIEW before OK).
- `both-ng`: the mildest verdict wins (a part is rejected only when every engine says NG; a part one
  engine passes is passed). For lines where a false reject costs more than an escape.
- `only:NAME`: that engine's verdict alone; the others still run, are logged and their disagreement shown.

Whatever the rule, `disagreement` says where the engines differ, so the operator and the result log see it.
Scores of different engines are on different scales: the combined score is each engine's score as a
multiple of its own NG threshold (1.0 = at the NG threshold), the worst for cross-check and either-ng,
the mildest for both-ng.
"""

from __future__ import annotations

import json
import math

from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.verdict import Verdict

RULES = ("cross-check", "either-ng", "both-ng")
DEFAULT_RULE = "cross-check"
_SEVERITY = {Verdict.OK: 0, Verdict.REVIEW: 1, Verdict.NG: 2}


def rule_help() -> str:
    return ", ".join(RULES) + " or only:NAME"


def check_rule(rule: str, names: list[str]) -> str:
    """`rule` when it is one of the rules and names an engine of the line; else one line saying what is."""
    if rule in RULES:
        return rule
    if rule.startswith("only:"):
        name = rule[5:]
        if name in names:
            return rule
        raise StationError(f"combine rule {rule!r} names no engine of this line; the line runs "
                           f"{', '.join(names)}")
    raise StationError(f"unknown combine rule {rule[:40]!r}; use {rule_help()}")


def pin(cell: tuple[int, int] | None) -> str:
    return "no pin" if cell is None else f"pin col {cell[0] + 1}, row {cell[1] + 1}"


def said(name: str, result: InspectionResult) -> str:
    """What one engine said of the part, in a few words: `vit NG missing at pin col 2, row 5`."""
    if result.verdict is Verdict.OK:
        return f"{name} OK"
    where = f" at {pin(result.top_cell)}" if result.top_cell is not None else ""
    return f"{name} {result.verdict.value} {result.label}{where}"


def disagreement(results: dict[str, InspectionResult]) -> str:
    """Where the engines differ: in the verdict, or (every engine rejecting the part) in the pin; "" if nowhere."""
    verdicts = {r.verdict for r in results.values()}
    if len(verdicts) > 1:
        return "engines disagree: " + "; ".join(said(n, r) for n, r in results.items())
    if verdicts != {Verdict.OK}:
        cells = {r.top_cell for r in results.values()}
        if len(cells) > 1:
            return "engines disagree on the pin: " + "; ".join(said(n, r) for n, r in results.items())
    return ""


def relative_score(result: InspectionResult, ng_threshold: float) -> float:
    """The score as a multiple of the engine's NG threshold (inf where no part was found)."""
    if not math.isfinite(result.score):
        return float("inf")
    return result.score / ng_threshold if ng_threshold > 0 else float("inf")


def combine(results: dict[str, InspectionResult], ng_thresholds: dict[str, float], rule: str,
            recipe_hash: str) -> InspectionResult:
    """One verdict from each engine's result on the same registered part (`results` in the line's order)."""
    names = list(results)
    if not names:
        raise StationError("a line needs at least one recipe")
    rel = {n: relative_score(r, ng_thresholds[n]) for n, r in results.items()}
    differ = disagreement(results)
    if rule.startswith("only:"):
        lead = rule[5:]
        verdict, score = results[lead].verdict, rel[lead]
    elif rule == "cross-check":
        first = results[names[0]]
        verdict = Verdict.REVIEW if differ else first.verdict
        lead = _worst(results)
        score = max(rel.values())
    elif rule == "either-ng":
        lead = _worst(results)
        verdict, score = results[lead].verdict, max(rel.values())
    elif rule == "both-ng":
        lead = min(names, key=lambda n: _SEVERITY[results[n].verdict])
        verdict, score = results[lead].verdict, min(rel.values())
    else:
        raise StationError(f"unknown combine rule {rule[:40]!r}; use {rule_help()}")
    base = results[lead]
    label = base.label
    if verdict is Verdict.REVIEW and base.verdict is Verdict.OK:
        label = next(r.label for r in results.values() if r.verdict is not Verdict.OK)
    timings = {"registration": base.timings_ms.get("registration", 0.0),
               "engine": sum(r.timings_ms.get("engine", 0.0) for r in results.values())}
    timings.update({f"engine:{n}": r.timings_ms.get("engine", 0.0) for n, r in results.items()})
    timings["total"] = timings["registration"] + timings["engine"]
    message = "; ".join(m for m in (base.message, differ, engines_note(results)) if m)
    extra = {**base.extra, "engine": lead}  # the engine whose result the verdict follows (its map is shown)
    return InspectionResult(verdict, label, score, base.cell_scores, base.top_cell, timings, recipe_hash,
                            base.registered, base.class_probs, message, extra, dict(results), differ)


def _worst(results: dict[str, InspectionResult]) -> str:
    """The first engine with the most severe verdict."""
    return max(results, key=lambda n: _SEVERITY[results[n].verdict])


def engines_note(results: dict[str, InspectionResult]) -> str:
    """Each engine's result in one JSON object, for the result log's message."""
    brief = {n: {"verdict": r.verdict.value, "class": r.label, "top_cell": list(r.top_cell) if r.top_cell else None,
                 "score": round(float(r.score), 6) if math.isfinite(r.score) else None}
             for n, r in results.items()}
    return "engines " + json.dumps(brief, separators=(",", ":"))
