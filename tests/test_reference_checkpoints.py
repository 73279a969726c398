"""The reference checkpoints the package ships (`bench/checkpoints/`, written by
scripts/reference_checkpoints.py): current, complete for the main job, and reproducible."""

import pytest

from bench.gym.registry import load_task
from bench.methods import methods, resolve_methods
from bench.training import SHIPPED, checkpoint_path, load, shipped_path, train, training_data

STALE = "stale shipped checkpoint {}: run `python scripts/reference_checkpoints.py --task {}`"


def shipped():
    return sorted(SHIPPED.rglob("*.pt"))


@pytest.mark.parametrize("file", shipped(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_checkpoint_is_the_one_the_current_presets_train(file):
    meta = load(file).meta
    scope = file.parent.name  # a task, or `builtin` (a cross-family preset: any task stands for all)
    spec, task = methods()[meta["method"]], load_task("data_mixture" if scope == "builtin" else scope)
    expected = shipped_path(checkpoint_path(spec, training_data(spec, task, meta["seed"]), meta["seed"]))
    assert expected == file, STALE.format(file.name, task.name)


def test_the_main_job_trains_nothing():
    """README's main job (data_mixture, `--method all`) finds every learned method shipped."""
    task = load_task("data_mixture")
    for name in resolve_methods("all"):
        spec = methods()[name]
        if spec.learned:
            path = shipped_path(checkpoint_path(spec, training_data(spec, task), 0))
            assert path.is_file(), STALE.format(f"{name} (missing)", task.name)


def test_a_retrained_checkpoint_reproduces_the_shipped_digest(cache):
    """FSBO trains in seconds and deterministically: training it again gives the shipped state."""
    spec, task = methods()["fsbo"], load_task("data_mixture")
    retrained, path = train(spec, task, force=True)
    assert path.is_relative_to(cache)
    assert retrained.meta["digest"] == load(shipped_path(path)).meta["digest"]
