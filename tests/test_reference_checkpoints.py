"""The reference checkpoints the package ships (`bench/checkpoints/`, written by
scripts/reference_checkpoints.py): current, complete for the main job, and reproducible."""

import pytest
import torch

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


def leaves(state, prefix: str = "") -> dict:
    """A checkpoint's state as {dotted path: tensor or plain value}."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
    if isinstance(state, list | tuple):
        return {k: v for i, value in enumerate(state) for k, v in leaves(value, f"{prefix}{i}.").items()}
    return {prefix: state}


def test_a_retrained_checkpoint_reproduces_the_shipped_state(cache):
    """FSBO trains in seconds and deterministically: training it twice gives the same digest, and
    the shipped state to float precision. Bit for bit only where the kernels match those of the
    machine that shipped it: on a Sapphire Rapids machine (AVX-512 FP16), with the AVX2 kernels held
    (`bench.SAME_KERNELS`), its float64 state differed by 6e-10 relative at most."""
    spec, task = methods()["fsbo"], load_task("data_mixture")
    retrained, path = train(spec, task, force=True)
    assert path.is_relative_to(cache)
    again, _ = train(spec, task, force=True)
    assert again.meta["digest"] == retrained.meta["digest"]
    mine, shipped = leaves(retrained.state), leaves(load(shipped_path(path)).state)
    assert mine.keys() == shipped.keys()
    for key, value in mine.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, shipped[key], rtol=1e-6, atol=0, equal_nan=True, msg=key)
        elif isinstance(value, float):
            assert value == pytest.approx(shipped[key], rel=1e-6, nan_ok=True), key
        else:
            assert value == shipped[key], key
