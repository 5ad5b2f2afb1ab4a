"""Several recipes on every frame: the combine rules, one registration, eval/inspect with --recipe given
twice, the live line with each engine's map, a toy engine added without touching the UI or the CLI,
and the threshold tuner scoring a recipe while the line runs it."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from station.cli import main
from station.core.combine import check_rule, combine
from station.core.engines import register_engine
from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.verdict import Verdict


def _result(verdict: str, label: str = "missing", cell=(1, 4), score: float = 1.0) -> InspectionResult:
    return InspectionResult(Verdict(verdict), label if verdict != "OK" else "good", score, np.zeros((9, 3)),
                            cell, {"registration": 1.0, "engine": 2.0, "total": 3.0}, "sha256:x")


NG = {"vit": 0.5, "rta": 4.0}


def _combine(vit: InspectionResult, rta: InspectionResult, rule: str = "cross-check") -> InspectionResult:
    return combine({"vit": vit, "rta": rta}, NG, rule, "line:x")


def test_cross_check_agreement_keeps_the_verdict():
    out = _combine(_result("NG", score=0.9), _result("NG", score=8.0))
    assert out.verdict is Verdict.NG and out.label == "missing" and out.top_cell == (1, 4)
    assert out.disagreement == "" and set(out.engines) == {"vit", "rta"}
    assert out.score == pytest.approx(2.0)  # the worst, in NG thresholds: 8 / 4
    assert _combine(_result("OK", cell=(0, 0)), _result("OK", cell=(2, 8))).verdict is Verdict.OK  # pins of OK parts


def test_cross_check_disagreement_is_review_naming_the_pin_and_each_engine():
    out = _combine(_result("OK", score=0.01), _result("NG", "pushed", (2, 6), 9.0))
    assert out.verdict is Verdict.REVIEW and out.top_cell == (2, 6)
    assert "pin col 3, row 7" in out.disagreement and "vit OK" in out.disagreement
    assert "rta NG pushed" in out.disagreement and out.disagreement in out.message
    pin = _combine(_result("NG", cell=(0, 1)), _result("NG", cell=(0, 2)))
    assert pin.verdict is Verdict.REVIEW and "on the pin" in pin.disagreement
    row = json.loads(pin.message.split("engines ", 2)[-1])  # both results reach the result log's message
    assert row["vit"]["top_cell"] == [0, 1] and row["rta"]["top_cell"] == [0, 2]
    assert pin.to_dict()["engines"]["rta"]["verdict"] == "NG"


def test_either_both_and_only_rules():
    ok, ng = _result("OK", score=0.1), _result("NG", score=8.0)
    assert _combine(ok, ng, "either-ng").verdict is Verdict.NG
    assert _combine(ok, ng, "both-ng").verdict is Verdict.OK
    assert _combine(ng, ng, "both-ng").verdict is Verdict.NG
    only = _combine(ok, ng, "only:vit")
    assert only.verdict is Verdict.OK and only.disagreement  # the other engine's word is still shown
    assert _combine(ok, ng, "only:rta").verdict is Verdict.NG


def test_a_rule_must_exist_and_name_an_engine_of_the_line():
    assert check_rule("only:vit", ["vit", "rta"]) == "only:vit"
    with pytest.raises(StationError, match="names no engine"):
        check_rule("only:rt", ["vit", "rta"])
    with pytest.raises(StationError, match="unknown combine rule"):
        check_rule("majority", ["vit", "rta"])


# -- a toy engine, added in the tests only ------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_recipe(synthetic_data, tmp_path_factory):
    register_engine("toy", "toy_engine:ToyEngine")
    out = tmp_path_factory.mktemp("toy") / "toy"
    assert main(["train", "--engine", "toy", "--data", str(synthetic_data / "train"), "--out", str(out),
                 "--region", "blob", "--grid", "3x9", "--quiet", "--config", '{"gain": 2.0}']) == 0
    return out


def test_toy_engine_settings_are_checked_by_its_model(synthetic_data, tmp_path, capsys):
    register_engine("toy", "toy_engine:ToyEngine")
    code = main(["train", "--engine", "toy", "--data", str(synthetic_data / "train"), "--out", str(tmp_path / "t"),
                 "--region", "blob", "--config", '{"gain": 1e9}', "--quiet"])
    assert code == 2 and "setting gain is out of bounds" in capsys.readouterr().err


def test_eval_and_inspect_with_two_recipes(synthetic_recipe, toy_recipe, synthetic_data, capsys):
    capsys.readouterr()
    argv = ["--recipe", str(synthetic_recipe), "--recipe", str(toy_recipe)]
    assert main(["eval", *argv, "--data", str(synthetic_data / "test"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["engines"]) == {"synthetic-rt", "toy"} and out["combine"] == "cross-check"
    assert 0.0 <= out["disagreement_rate"] <= 1.0 and out["n_images"] == 50
    for key in ("accuracy", "escape_rate", "review_rate"):
        assert key in out and key in out["engines"]["toy"]
    assert main(["inspect", *argv, "--combine", "either-ng", "--source", str(synthetic_data / "test" / "missing"),
                 "--max-frames", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(set(x["engines"]) == {"synthetic-rt", "toy"} for x in lines)
    assert main(["eval", *argv, "--combine", "only:nope", "--data", str(synthetic_data / "test")]) == 2
    assert "names no engine" in capsys.readouterr().err


def test_recipes_registered_alike_share_one_registration(synthetic_recipe, toy_recipe):
    from station.core.multi import MultiInspector, same_registration
    from station.core.recipe import Recipe

    rt, toy = Recipe.load(synthetic_recipe), Recipe.load(toy_recipe)
    assert same_registration(toy, toy)
    line = MultiInspector([toy, rt])
    frame = np.full((256, 256, 3), 200, np.uint8)
    frame[60:200, 100:160] = 40
    result = line.inspect(frame)
    assert set(result.engines) == {"toy", "synthetic-rt"}
    if same_registration(toy, rt):
        assert result.engines["toy"].registered is result.engines["synthetic-rt"].registered


def test_live_line_with_two_recipes_logs_both_and_renders_each_map(synthetic_recipe, toy_recipe, synthetic_data):
    from station.core.live import LivePipeline
    from station.core.multi import load_line
    from station.core.sources import make_source

    line = load_line([str(toy_recipe), str(synthetic_recipe)])
    pipeline = LivePipeline(make_source(str(synthetic_data / "test" / "pushed")), line)
    items = []
    pipeline.result_ready.connect(items.append)
    done = threading.Event()
    pipeline.finished.connect(done.set)
    pipeline.start()
    assert done.wait(60)
    pipeline.stop()
    assert len(items) == 10 and all(i.result is not None for i in items)
    for item in items:
        assert set(item.overlays) == {"toy", "synthetic-rt"} and item.overlay is not None
        assert "engine:toy" in item.timings_ms and item.result.recipe_hash == line.content_hash


def test_tuner_scores_its_own_copy_while_the_line_runs_the_recipe(toy_recipe, synthetic_data):
    """The race: the line infers with the recipe's engine while the tuner scores the same recipe."""
    from station.core.dataset import load_dataset
    from station.core.inspector import Inspector
    from station.core.live import LivePipeline
    from station.core.recipe import Recipe
    from station.core.sources import make_source
    from station.core.workbench.tuner import score_dataset

    recipe = Recipe.load(toy_recipe)
    pipeline = LivePipeline(make_source(f"demo:{synthetic_data / 'test'}", fps=200), Inspector(recipe))
    errors = []
    pipeline.result_ready.connect(lambda item: errors.append(item) if item.result is None or
                                  item.result.label == "bad_frame" else None)
    pipeline.start()
    try:
        scored = score_dataset(recipe, load_dataset(synthetic_data, "test"))
    finally:
        pipeline.stop()
    assert len(scored) == 50 and np.all(np.isfinite(scored.scores[~scored.no_part]))
    assert recipe.engine.overlaps == 0 and not errors
    assert pipeline.tally.snapshot()["total"] > 0


def test_the_workbench_replaces_only_its_engines_recipe_on_a_line_of_several(qtbot, tmp_path, monkeypatch):
    """Publishing, activating or rolling back one engine's recipe keeps the line's other recipes and rule."""
    from station.core.recipe import Recipe
    from station.core.resources import bundled_recipe
    from station.core.sources import make_source
    from station.ui.live_service import LiveService

    vit, rta = Recipe.load(bundled_recipe("vit")), Recipe.load(bundled_recipe("rt-attention"))
    service = LiveService(make_source("demo"), [vit, rta], combine="either-ng")
    again = Recipe.load(bundled_recipe("rt-attention"))
    service.replace_recipe(again)
    assert service.recipes == [vit, again] and service.combine == "either-ng"
    rt = Recipe.load(bundled_recipe("rt"))
    service.replace_recipe(rt)  # an engine the line does not run takes the lead's place
    assert service.recipes == [rt, again]
    assert service.recipe_of("rt-attention") is again and service.recipe_of("vit") is None
    service.shutdown()


def test_the_line_sets_torch_threads_and_runs_its_engines_on_threads_when_the_settings_say_so(qtbot):
    """engine_threads and parallel_engines (station/core/settings.py) reach the line's inspector; the engines'
    threads end with the line."""
    import torch

    from station.core.recipe import Recipe
    from station.core.resources import bundled_recipe
    from station.core.sources import make_source
    from station.ui.live_service import LiveService

    threads = torch.get_num_threads()
    try:
        vit, rta = Recipe.load(bundled_recipe("vit")), Recipe.load(bundled_recipe("rt-attention"))
        service = LiveService(make_source("demo"), [vit, rta], parallel=True, engine_threads=1)
        assert torch.get_num_threads() == 1
        source = service.pipeline.source
        source.open()
        frame = None
        for _ in range(200):
            frame = frame or source.read()
        source.close()
        result = service.pipeline.inspector.inspect(frame.image)
        assert set(result.engines) == {"vit", "rt-attention"}
        assert any(t.name.startswith("station-engine") for t in threading.enumerate())
        service.shutdown()
        assert not any(t.name.startswith("station-engine") for t in threading.enumerate())
        sequential = LiveService(make_source("demo"), [vit, rta], engine_threads=0)
        assert sequential.pipeline.inspector._pool is None and torch.get_num_threads() == 1  # 0: left as it is
        sequential.shutdown()
    finally:
        torch.set_num_threads(threads)


def test_the_operator_reads_each_engine_in_words_never_the_logs_json():
    """A line of two engines keeps each engine's result as JSON in the result's message, for the log. The verdict
    panel showed that message as the part's note (every demo part: 'engines {"vit": {"verdict": ...'); it shows
    only the lamp's line now, and the full-size view names each engine in words."""
    from station.core.live import LiveResult
    from station.core.registration import Registered
    from station.core.sources import Frame
    from station.ui.result_dialog import describe
    from station.ui.verdict_panel import note

    both = _combine(_result("OK", score=0.01), _result("OK", score=1.0))
    assert '"verdict"' in both.message  # what the log keeps
    assert note(both) == ""
    text = describe(LiveResult(1, Frame(None, 0, 0.0, "part.png"), both, None, None, {}, 0.0))
    assert "vit: OK good, score 0.01" in text and "rta: OK good, score 1" in text and "{" not in text
    lit = _result("OK")
    lit.registered = Registered(np.zeros((8, 8, 3), np.uint8), np.eye(2, 3), False, tone_shift=-38.0)
    assert note(lit) == "\nlight 38 levels darker than taught: check the lamp"
    assert note(_combine(lit, _result("OK"))) == note(lit)  # the lead engine's registration is the line's
