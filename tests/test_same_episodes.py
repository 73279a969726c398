"""scripts/same_episodes.py: a rerun's episodes against a reference, packed or loose."""

import json
import runpy
from pathlib import Path

from bench import api
from bench.store import Store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "same_episodes.py"
main = runpy.run_path(str(SCRIPT))["main"]


def test_a_rerun_matches_its_reference_and_a_changed_score_is_named(tmp_path, cache, capsys):
    reference, rerun = tmp_path / "reference", tmp_path / "rerun"
    api.run("data_mixture", ["random", "centroid"], "quick", reference, budget=3, seeds=2)
    Store(reference).pack()
    api.run("data_mixture", ["random"], "quick", rerun, budget=3, seeds=2)
    assert main([str(rerun), str(reference)]) == 0
    assert "4 episodes shared, 4 identical, 0 differ" in capsys.readouterr().out

    marker = sorted(rerun.rglob("*.done.json"))[0]
    record = json.loads(marker.read_text())
    record["scores"]["pregret"] += 0.01
    marker.write_text(json.dumps(record))
    assert main([str(rerun), str(reference)]) == 1
    out = capsys.readouterr().out
    assert "3 identical, 1 differ" in out and f"random {marker.parent.name}" in out


def test_nothing_shared_fails_and_corrupt_results_are_one_message(tmp_path, cache, capsys):
    api.run("data_mixture", ["random"], "quick", tmp_path / "a", budget=3, seeds=1)
    api.run("data_mixture", ["centroid"], "quick", tmp_path / "b", budget=3, seeds=1)
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    next((tmp_path / "a").rglob("*.done.json")).write_text("{not json")
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "is corrupt" in capsys.readouterr().err
