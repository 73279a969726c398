"""`sft_lora` on the Tinker Cookbook sweep: run counts, families, diverged runs, split, card."""

import re
import subprocess
import sys

import pytest

from bench.data import SOURCES, path_of
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.tasks import sft_lora
from tests.helpers import check_quick_suite

# experiment -> (fidelity label, model), cheapest first
FAMILIES = {
    "llama3-base": [("1B", "meta-llama/Llama-3.2-1B"), ("3B", "meta-llama/Llama-3.2-3B"),
                    ("8B", "meta-llama/Llama-3.1-8B"), ("70B", "meta-llama/Llama-3.1-70B")],
    "llama3-instruct": [("8B", "meta-llama/Llama-3.1-8B-Instruct"),
                        ("70B", "meta-llama/Llama-3.3-70B-Instruct")],
    "qwen3": [("8B", "Qwen/Qwen3-8B"), ("30B-A3B", "Qwen/Qwen3-30B-A3B"), ("32B", "Qwen/Qwen3-32B")],
    "qwen3-base": [("8B", "Qwen/Qwen3-8B-Base"), ("30B-A3B", "Qwen/Qwen3-30B-A3B-Base")],
    "qwen3-instruct-2507": [("4B", "Qwen/Qwen3-4B-Instruct-2507"),
                            ("30B-A3B", "Qwen/Qwen3-30B-A3B-Instruct-2507"),
                            ("235B-A22B", "Qwen/Qwen3-235B-A22B-Instruct-2507")],
    "qwen3-vl": [("30B-A3B", "Qwen/Qwen3-VL-30B-A3B-Instruct"),
                 ("235B-A22B", "Qwen/Qwen3-VL-235B-A22B-Instruct")],
    "qwen3.5": [("4B", "Qwen/Qwen3.5-4B"), ("9B", "Qwen/Qwen3.5-9B"), ("27B", "Qwen/Qwen3.5-27B"),
                ("35B-A3B", "Qwen/Qwen3.5-35B-A3B"), ("397B-A17B", "Qwen/Qwen3.5-397B-A17B")],
    "qwen3.5-base": [("9B", "Qwen/Qwen3.5-9B-Base"), ("35B-A3B", "Qwen/Qwen3.5-35B-A3B-Base")],
    "qwen3.6": [("27B", "Qwen/Qwen3.6-27B"), ("35B-A3B", "Qwen/Qwen3.6-35B-A3B")],
    "nemotron3": [("30B-A3B", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"),
                  ("120B-A12B", "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16"),
                  ("550B-A55B", "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16")],
    "gpt-oss": [("20B-A3.6B", "openai/gpt-oss-20b"), ("120B-A5.1B", "openai/gpt-oss-120b")],
}
LEFT_OUT = {"deepseek-ai/DeepSeek-V3.1", "deepseek-ai/DeepSeek-V3.1-Base", "moonshotai/Kimi-K2-Thinking",
            "moonshotai/Kimi-K2.5", "moonshotai/Kimi-K2.6"}


def _raw_path():
    return path_of("tinker_cookbook", sft_lora.FILE)


@pytest.fixture(scope="module")
def raw():
    """model -> (finished rows as (lr, rank, test NLL), diverged count), by plain string splitting."""
    out = {}
    for chunk in _raw_path().read_text().split("\n## ")[1:]:
        head, *lines = chunk.split("\n")
        if "/" not in head:
            continue
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines
                 if line.startswith("| ") and line[2].isdigit()]
        notes = [line.split("**Note:** ")[1] for line in lines if "run(s) diverged" in line]
        out[head] = ([(float(c[0]), int(c[1]), float(c[2])) for c in cells],
                     sum(int(n.split()[0]) for n in notes))
    return out


@pytest.fixture(scope="module")
def task():
    return load_task("sft_lora")


def test_run_counts_match_the_raw_file(raw, task):
    assert len(raw) == 35 and set(raw) == {m for fam in FAMILIES.values() for _, m in fam} | LEFT_OUT
    assert sum(len(rows) for rows, _ in raw.values()) == 548
    assert sum(n for _, n in raw.values()) == 110
    assert "**Divergence:** 80 runs diverged" in _raw_path().read_text()  # the stale summary (docstring)
    parsed = sft_lora.parse_sweep(_raw_path())
    counts = parsed.groupby(["model", "status"]).size()
    for model, (rows, diverged) in raw.items():
        assert counts.get((model, "finished"), 0) == len(rows), model
        assert counts.get((model, "diverged"), 0) == diverged, model
    held = sft_lora.experiment_runs()
    assert set(held.model) == set(raw) - LEFT_OUT
    for exp, fam in FAMILIES.items():
        runs = held[held.experiment == exp]
        assert (runs.status == "finished").sum() == sum(len(raw[m][0]) for _, m in fam), exp
        assert (runs.status == "diverged").sum() == sum(raw[m][1] for _, m in fam), exp
        for level, model in fam:  # the table holds one entry per configuration run
            pool = task.outcomes(exp, level)
            cells = {(lr, r) for lr, r, _ in raw[model][0]}
            cells |= set(zip(runs.lr[runs.model == model], runs.lora_rank[runs.model == model], strict=True))
            assert set(zip(pool.lr, pool.lora_rank, strict=True)) == cells and len(pool) == len(cells)


def test_families_sizes_and_fidelity_order(task):
    assert list(task.experiments) == list(FAMILIES)
    for name, fam in FAMILIES.items():
        fids = task.experiment(name).fidelities
        assert [f.name for f in fids] == [level for level, _ in fam]
        assert len(fids) >= 2
        costs = [f.cost for f in fids]
        params = [f.descriptors["params"] for f in fids]
        assert all(c > 0 for c in costs) and costs == sorted(set(costs)), name  # strictly increasing
        assert params == sorted(set(params)), name  # the target is the largest model
        assert all(f.descriptors["active_params"] <= f.descriptors["params"] for f in fids)
    by_name = {f.name: f for f in task.fidelities()}
    assert by_name["30B-A3B"].descriptors == {"params": 30e9, "active_params": 3e9}
    assert by_name["8B"].descriptors == {"params": 8e9, "active_params": 8e9}


def test_diverged_runs_score_the_threshold(raw, task):
    parsed = sft_lora.parse_sweep(_raw_path())
    diverged = parsed[parsed.status == "diverged"]
    assert (diverged.test_nll == sft_lora.DIVERGED_NLL).all() and diverged.wall_min.isna().all()
    assert max(nll for rows, _ in raw.values() for *_, nll in rows) < sft_lora.DIVERGED_NLL

    def value(exp, level, lr, rank):
        pool = task.outcomes(exp, level)
        hit = pool[(pool.lr == lr) & (pool.lora_rank == rank)]
        return hit.value.tolist()

    for lr in (1e-3, 3e-3):  # Llama-3.1-70B: no finished run at these LRs, 6 diverged
        for rank in (1, 2, 4):
            assert value("llama3-base", "70B", lr, rank) == [2.0]
    # Qwen3-30B-A3B: lr 3e-3 twice per rank; rank 4 averages a finished run with a diverged one
    finished = [nll for lr, r, nll in raw["Qwen/Qwen3-30B-A3B"][0] if (lr, r) == (3e-3, 4)]
    assert value("qwen3", "30B-A3B", 3e-3, 4) == [pytest.approx((finished[0] + 2.0) / 2)]
    assert value("qwen3", "30B-A3B", 3e-3, 1) == [2.0]
    # Nemotron-3-Nano: four ranks at 4e-3 and rank 1 at 2e-3; rank 4 at 2e-3 counts as not run
    for rank in (1, 4, 16, 64):
        assert value("nemotron3", "30B-A3B", 4e-3, rank) == [2.0]
    assert value("nemotron3", "30B-A3B", 2e-3, 1) == [2.0]
    assert value("nemotron3", "30B-A3B", 2e-3, 4) == []


@pytest.mark.parametrize("old, new, offset, what", [
    ("| 3e-04 | 4 | 0.5936 |", "| 3e-04 | 4 | 0.59x6 |", 0, "expected a result row"),
    ("| LR | LoRA Rank | Test NLL | Train NLL | Wall Time (min) |",
     "| LR | LoRA Rank | Test NLL | Train NLL | Test BPB | Wall Time (min) |", 0, "expected a result row"),
    ("3 run(s) diverged (test_nll > 2.0) at lr={3e-03} with rank={1, 2, 4}",
     "4 run(s) diverged (test_nll > 2.0) at lr={3e-03} with rank={1, 2, 4}", 0, "are not the 3 run"),
    ("run(s) diverged (test_nll > 2.0)", "run(s) diverged (test_nll > 3.0)", 0, "expected a note"),
])
def test_malformed_file_names_file_and_line(tmp_path, old, new, offset, what):
    text = _raw_path().read_text()
    at = text.index(old)
    bad = tmp_path / "sft_sweep.md"
    bad.write_text(text[:at] + new + text[at + len(old):])
    with pytest.raises(BenchError, match=what) as err:
        sft_lora.parse_sweep(bad)
    assert str(err.value).startswith(f"{bad}:{text[:at].count(chr(10)) + 1 + offset}: ")


def test_split_is_the_families_with_four_sizes(task):
    by_rule = {name for name, fam in FAMILIES.items() if len(fam) >= 4}
    assert set(task.split("test")) == by_rule == {"llama3-base", "qwen3.5"}
    assert set(task.split("train")) == set(FAMILIES) - by_rule


def test_source_and_description(task):
    src = SOURCES["tinker_cookbook"]
    assert src.repository == "thinking-machines-lab/tinker-cookbook" and src.licence == "Apache-2.0"
    assert src.commit == "9dfcc3a2cf44432d621a01005073dc6d76a1e87a"
    assert task.sources == ("tinker_cookbook",) and not task.simulated
    assert not re.search(r"\b0\.\d", task.description)  # no outcome values shown to optimizers


def test_quick_suite_runs(task, tmp_path):
    check_quick_suite(task, tmp_path)
    prior = task.problem("qwen3.5", Budget("trials", 3)).prior
    assert set(prior.fidelity) == {"4B", "9B", "27B", "35B-A3B"}


@pytest.mark.slow
def test_task_card():
    r = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "tasks", "--describe",
                        "sft_lora"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for text in ("task sft_lora", "licence: Apache-2.0", "test (2): llama3-base, qwen3.5", "550B-A55B",
                 "Spearman rank correlation"):
        assert text in r.stdout, text


def test_diverged_runs_are_flagged_from_the_status_column(task):
    """98 diverged runs in experiments; Qwen3-30B-A3B's two at lr 3e-3, rank 1 are one entry, and
    its ranks 4 and 64 (one diverged, one finished run each) are not diverged: 95 entries."""
    table = task.table
    train = table.experiment.isin(task.split("train"))
    assert table.diverged[train].sum() == 58 and table.diverged[~train].sum() == 37
    assert (table.value[table.diverged] == sft_lora.DIVERGED_NLL).all()
    pool = task.outcomes("qwen3", "30B-A3B").assign(diverged=task.diverged("qwen3", "30B-A3B"))
    at = pool[pool.lr == 3e-3].set_index("lora_rank").diverged
    assert at[1] and not at[4] and not at[64]
