"""`sft_lora`: choose the learning rate and LoRA rank of a supervised fine-tune, from the Tinker sweep.

Source: the Tinker Cookbook's published LoRA SFT sweep (`sft_sweep.md`): 35 base models, each
fine-tuned with LoRA on tulu3 (train split; batch 128, 780 steps) over a grid of learning rate x
rank; 548 finished runs (test NLL, train NLL, wall time) and, per model, a note giving how many runs
diverged and at which learning rates and ranks (110 in all; the file's summary says 80, apparently
from an older version: its tally of best learning rates covers 27 models).
Objective: `test_nll`, the per-token NLL on tulu3's test split (nats/token). Config: `lr` (log) and
`lora_rank` (log int). The grid shrinks toward small ranks as models grow (4-128 up to 9B, 1-64 at
27B-120B, 1-4 at 70B dense and from 235B; gpt-oss 4-16 and 1-16) and some models have their own
learning rates: each keeps its grid as run, with no regridding. Repeated runs of a configuration are
averaged.

Diverged runs are outcomes: each scores DIVERGED_NLL = 2.0, the test NLL above which the source calls
a run diverged (the real values, higher, are not published; every finished run is below, at most
1.72). A note names the count n, a set of learning rates and a set of ranks; the diverged runs are the
cells of those learning rates x ranks with no finished run, when there are exactly n of them (28 of 30
notes; crashed runs are left out of the file silently, so a cell can lack runs without having
diverged). Two notes need a reading (`READINGS`). Qwen3-30B-A3B (4 runs at lr 3e-3, ranks {1, 4, 64};
only rank 1 lacks a finished run): lr 3e-3 was run twice per rank (rank 16 has two finished runs), so
rank 1 diverged twice and ranks 4 and 64 once each beside a finished run (such a cell scores the mean
of the two and is not diverged: half of its runs, not more, diverged). Nemotron-3-Nano (5 runs at
lr {2e-3, 4e-3}, ranks {1, 4, 16, 64}; 6 cells lack a finished run): all four ranks at 4e-3 and
rank 1 at 2e-3, as divergence in this file rises with lr and falls with rank (ranks 16 and 64
finished at 2e-3); rank 4 at 2e-3 counts as not run. A note that neither
rule accounts for, or any line of unexpected form, stops loading with the file and line.
The runs table's `status` column ("finished"/"diverged") declares them to the task
(`diverged: {column: status, flag: diverged}`): 58 of the 355 train table entries (21 of 140 at
the targets) and 37 of the 170 test entries (9 of 30 at the targets) are diverged.

Fidelities: model sizes, descriptors `params` (total) and `active_params` (the same for dense
models), the nominal sizes in the model names (gpt-oss: 3.6B and 5.1B active, from its model card).
A level is named by size (`8B`, `30B-A3B`) and shared by the families that have that size.
Cost: hours of wall-clock time per run on the Tinker service, a shared training service: not
GPU-hours (the service does not report its hardware; the card's GPU-hours column holds these hours).
The measured times depend on server load (median 341 min for Llama-3.1-70B, 560 for Llama-3.3-70B-
Instruct) and do not rise with size in every family (Qwen3.5-9B 46 min vs 4B 62, Qwen3-32B 147 vs
30B-A3B 153, Nemotron-3-Super 153 vs Nano 161), so the cost is the power law fitted to the 35 models'
median wall times against total parameters, log minutes = a + b log N (b = 0.41, R^2 = 0.77; active
parameters give R^2 = 0.47): 29 min at 1B, 2.8 h at 70B, 6.4 h at 550B, rising with size.

Experiments: model families that share a tokenizer (per-token NLL is comparable only there), base
and post-trained variants apart (they start from different losses); sizes cheapest first, the
largest is the target. Dense and MoE models of a generation are one ladder by total parameters.
- `llama3-base` Llama-3.2-1B, 3.2-3B, 3.1-8B, 3.1-70B; `llama3-instruct` Llama-3.1-8B-Instruct,
  3.3-70B-Instruct: Llama 3.1, 3.2 and 3.3 share the 128K-token Llama 3 tokenizer.
- `qwen3` 8B, 30B-A3B, 32B (the hybrid-thinking releases); `qwen3-base` 8B-Base, 30B-A3B-Base;
  `qwen3-instruct-2507` 4B, 30B-A3B, 235B-A22B; `qwen3-vl` VL-30B-A3B, VL-235B-A22B (Instruct): the
  Qwen3 tokenizer; each release line is its own post-training.
- `qwen3.5` 4B, 9B, 27B, 35B-A3B, 397B-A17B; `qwen3.5-base` 9B-Base, 35B-A3B-Base; `qwen3.6` 27B,
  35B-A3B: each generation on its own, as the source does not say that generations share a tokenizer.
- `nemotron3` Nemotron-3 Nano 30B-A3B, Super 120B-A12B, Ultra 550B-A55B: one generation, one tokenizer.
- `gpt-oss` 20b, 120b: the o200k_harmony tokenizer.
Left out: DeepSeek-V3.1 and -Base (671B-A37B) and Kimi-K2-Thinking, K2.5, K2.6 (1T-A32B), one size
per family (58 finished, 12 diverged runs); their wall times enter the cost fit.
Split: `test` = the families with at least MIN_TEST_SIZES = 4 sizes, `llama3-base` and `qwen3.5` (a
rule on sizes, fixed before looking at outcomes); the other nine are `train`.

Shared runs: none. Each run fine-tunes one model, and each model belongs to one experiment; a level
name (`8B`, `30B-A3B`) shared by several families labels different models in each. Experiments
share only the learning-rate x rank grid and the wall-time cost fit (every model's times, outcomes
not used).

Groups: each family is a group of its own (no shared runs), 11 groups, so 5 cross-validation
folds of 2 or 3 families (cv1of5: `gpt-oss`, `qwen3-base`, `qwen3.6`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import path_of
from bench.errors import BenchError
from bench.gym.cache import cached_table
from bench.gym.spec import TaskSpec, build_task, si_format
from bench.gym.task import Task

FILE = "tinker_cookbook/recipes/chat_sl/results/sft_sweep.md"
DIVERGED_NLL = 2.0  # the source's threshold; a diverged run's outcome
MIN_TEST_SIZES = 4  # families with at least this many sizes are `test`

# Hugging Face id -> (experiment, total parameters, active parameters); None: not in an experiment.
MODELS: dict[str, tuple[str | None, float, float]] = {
    "meta-llama/Llama-3.2-1B": ("llama3-base", 1e9, 1e9),
    "meta-llama/Llama-3.2-3B": ("llama3-base", 3e9, 3e9),
    "meta-llama/Llama-3.1-8B": ("llama3-base", 8e9, 8e9),
    "meta-llama/Llama-3.1-70B": ("llama3-base", 70e9, 70e9),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama3-instruct", 8e9, 8e9),
    "meta-llama/Llama-3.3-70B-Instruct": ("llama3-instruct", 70e9, 70e9),
    "Qwen/Qwen3-8B": ("qwen3", 8e9, 8e9),
    "Qwen/Qwen3-30B-A3B": ("qwen3", 30e9, 3e9),
    "Qwen/Qwen3-32B": ("qwen3", 32e9, 32e9),
    "Qwen/Qwen3-8B-Base": ("qwen3-base", 8e9, 8e9),
    "Qwen/Qwen3-30B-A3B-Base": ("qwen3-base", 30e9, 3e9),
    "Qwen/Qwen3-4B-Instruct-2507": ("qwen3-instruct-2507", 4e9, 4e9),
    "Qwen/Qwen3-30B-A3B-Instruct-2507": ("qwen3-instruct-2507", 30e9, 3e9),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": ("qwen3-instruct-2507", 235e9, 22e9),
    "Qwen/Qwen3-VL-30B-A3B-Instruct": ("qwen3-vl", 30e9, 3e9),
    "Qwen/Qwen3-VL-235B-A22B-Instruct": ("qwen3-vl", 235e9, 22e9),
    "Qwen/Qwen3.5-4B": ("qwen3.5", 4e9, 4e9),
    "Qwen/Qwen3.5-9B": ("qwen3.5", 9e9, 9e9),
    "Qwen/Qwen3.5-27B": ("qwen3.5", 27e9, 27e9),
    "Qwen/Qwen3.5-35B-A3B": ("qwen3.5", 35e9, 3e9),
    "Qwen/Qwen3.5-397B-A17B": ("qwen3.5", 397e9, 17e9),
    "Qwen/Qwen3.5-9B-Base": ("qwen3.5-base", 9e9, 9e9),
    "Qwen/Qwen3.5-35B-A3B-Base": ("qwen3.5-base", 35e9, 3e9),
    "Qwen/Qwen3.6-27B": ("qwen3.6", 27e9, 27e9),
    "Qwen/Qwen3.6-35B-A3B": ("qwen3.6", 35e9, 3e9),
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": ("nemotron3", 30e9, 3e9),
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16": ("nemotron3", 120e9, 12e9),
    "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16": ("nemotron3", 550e9, 55e9),
    "openai/gpt-oss-20b": ("gpt-oss", 20e9, 3.6e9),
    "openai/gpt-oss-120b": ("gpt-oss", 120e9, 5.1e9),
    "deepseek-ai/DeepSeek-V3.1": (None, 671e9, 37e9),
    "deepseek-ai/DeepSeek-V3.1-Base": (None, 671e9, 37e9),
    "moonshotai/Kimi-K2-Thinking": (None, 1e12, 32e9),
    "moonshotai/Kimi-K2.5": (None, 1e12, 32e9),
    "moonshotai/Kimi-K2.6": (None, 1e12, 32e9),
}
# Diverged runs (lr, rank) of the two notes whose LRs x ranks do not pin them down (module docstring).
READINGS: dict[str, list[tuple[float, int]]] = {
    "Qwen/Qwen3-30B-A3B": [(3e-3, 1), (3e-3, 1), (3e-3, 4), (3e-3, 64)],
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": [(4e-3, 1), (4e-3, 4), (4e-3, 16), (4e-3, 64), (2e-3, 1)],
}

_FAMILIES = [exp for exp, *_ in MODELS.values() if exp]
TEST = sorted(e for e in set(_FAMILIES) if _FAMILIES.count(e) >= MIN_TEST_SIZES)

_SECTION = re.compile(r"^## (\S+/\S+)$")
_GRID = re.compile(r"^- (Learning rates|LoRA ranks): \[([^\]]*)\]$")
_HEADER = "| LR | LoRA Rank | Test NLL | Train NLL | Wall Time (min) |"
_NUM = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
_ROW = re.compile(rf"^\| {_NUM} \| (\d+) \| {_NUM} \| {_NUM} \| {_NUM} \|$")
_NOTE = re.compile(r"^> \*\*Note:\*\* (\d+) run\(s\) diverged \(test_nll > ([\d.]+)\) at lr=\{([^}]*)\} "
                   r"with rank=\{([^}]*)\} and are excluded from the table above\.$")


@dataclass
class _Section:
    model: str
    line: int
    grid: dict[str, list[float]] = field(default_factory=dict)
    header: bool = False
    rows: list[tuple[float, int, float, float]] = field(default_factory=list)  # lr, rank, nll, minutes
    note: tuple[int, int, set[float], set[int]] | None = None  # line, runs, lrs, ranks


def _numbers(text: str, path: Path, no: int, line: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise BenchError(f"{path}:{no}: expected a list of numbers, got {line!r}") from None


def _sections(path: Path) -> list[_Section]:
    """The per-model sections of the sweep file; any line of unexpected form stops with its number."""
    sections: list[_Section] = []
    current: _Section | None = None
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("## "):
            m = _SECTION.match(line)
            current = _Section(m[1], no) if m else None
            sections += [current] if current else []
        elif current is None:
            continue
        elif m := _GRID.match(line):
            current.grid[m[1]] = _numbers(m[2], path, no, line)
        elif line == _HEADER:
            current.header = True
        elif line.startswith("|") and not set(line) <= set("|-: "):
            m = _ROW.match(line)
            if not (m and current.header):
                raise BenchError(f"{path}:{no}: expected a result row under {_HEADER!r}, got {line!r}")
            current.rows.append((float(m[1]), int(m[2]), float(m[3]), float(m[5])))
        elif "diverged" in line:
            m = _NOTE.match(line)
            if not m or float(m[2]) != DIVERGED_NLL:
                raise BenchError(f"{path}:{no}: expected a note 'N run(s) diverged (test_nll > "
                                 f"{DIVERGED_NLL}) at lr={{...}} with rank={{...}} ...', got {line!r}")
            ranks = _numbers(m[4], path, no, line)
            current.note = (no, int(m[1]), set(_numbers(m[3], path, no, line)), {int(r) for r in ranks})
    seen: set[str] = set()
    for s in sections:
        where = f"{path}:{s.line}: section {s.model}"
        if s.model not in MODELS or s.model in seen:
            raise BenchError(f"{where} is not one of the {len(MODELS)} known models, or is repeated")
        seen.add(s.model)
        if set(s.grid) != {"Learning rates", "LoRA ranks"} or not s.rows:
            raise BenchError(f"{where} needs its learning rates, LoRA ranks and a results table")
        cells = {(lr, rank) for lr in s.grid["Learning rates"] for rank in s.grid["LoRA ranks"]}
        if any((lr, rank) not in cells or nll >= DIVERGED_NLL for lr, rank, nll, _ in s.rows):
            raise BenchError(f"{where} has a result outside its grid of learning rates x ranks, or a "
                             f"finished run at test NLL >= {DIVERGED_NLL}")
    missing = sorted(set(MODELS) - seen)
    if missing:
        raise BenchError(f"{path} has no section for {missing}")
    return sections


def _diverged(s: _Section, path: Path) -> list[tuple[float, int]]:
    """(lr, rank) of each diverged run of a section, from its note (see the module docstring)."""
    if s.note is None:
        return []
    no, n, lrs, ranks = s.note
    finished = {(lr, rank) for lr, rank, *_ in s.rows}
    runs = READINGS.get(s.model) or [(lr, r) for lr in sorted(lrs) for r in sorted(ranks)
                                     if (lr, r) not in finished]
    if (len(runs) != n or {lr for lr, _ in runs} != lrs or {r for _, r in runs} != ranks
            or not (lrs <= set(s.grid["Learning rates"]) and ranks <= set(s.grid["LoRA ranks"]))):
        raise BenchError(f"{path}:{no}: the note's {n} diverged run(s) at lr={sorted(lrs)}, rank="
                         f"{sorted(ranks)} are not the {len(runs)} run(s) placed for {s.model}")
    return runs


def parse_sweep(path: Path) -> pd.DataFrame:
    """Every run of the file: model, lr, lora_rank, test_nll, wall_min, status (finished/diverged).

    A diverged run's `test_nll` is DIVERGED_NLL and its wall time is unknown (NaN).
    """
    rows = []
    for s in _sections(path):
        rows += [(s.model, lr, rank, nll, minutes, "finished") for lr, rank, nll, minutes in s.rows]
        rows += [(s.model, lr, rank, DIVERGED_NLL, np.nan, "diverged") for lr, rank in _diverged(s, path)]
    return pd.DataFrame(rows, columns=["model", "lr", "lora_rank", "test_nll", "wall_min", "status"])


def wall_time_fit(runs: pd.DataFrame) -> tuple[float, float]:
    """(a, b) of log(median wall minutes) = a + b log(total params), over every model of the file."""
    median = runs[runs.status == "finished"].groupby("model").wall_min.median()
    b, a = np.polyfit(np.log([MODELS[m][1] for m in median.index]), np.log(median.to_numpy()), 1)
    return float(a), float(b)


def size_label(total: float, active: float) -> str:
    """'8B' for a dense model, '30B-A3B' for a mixture of experts."""
    return si_format(total) if active == total else f"{si_format(total)}-A{si_format(active)}"


def _table() -> pd.DataFrame:
    runs = parse_sweep(path_of("tinker_cookbook", FILE))
    a, b = wall_time_fit(runs)
    runs = pd.concat([runs[runs.model == m] for m, (exp, *_) in MODELS.items() if exp], ignore_index=True)
    exp, total, active = zip(*(MODELS[m] for m in runs.model), strict=True)
    return runs.assign(
        experiment=exp, params=total, active_params=active,
        level=[size_label(t, s) for t, s in zip(total, active, strict=True)],
        cost_hours=np.exp(a + b * np.log(total)) / 60.0,
    )


def experiment_runs() -> pd.DataFrame:
    """The runs of the models in experiments, one row each, diverged runs included (cached)."""
    return cached_table("sft_lora", ["tinker_cookbook"], 1, _table)


def load() -> Task:
    spec = TaskSpec(
        name="sft_lora",
        description=(
            "Choose the learning rate `lr` and the LoRA rank `lora_rank` for LoRA supervised "
            "fine-tuning of a pretrained language model on the Tulu 3 SFT mixture (batch 128, 780 "
            "steps), to minimise the test negative log-likelihood per token. The fidelities are "
            "models of one family (one tokenizer) from small to large; the largest is the target. "
            "Larger models were run at smaller ranks, so the grid of configurations differs from "
            f"one size to the next. A run that diverged scores {DIVERGED_NLL}."
        ),
        objective={"column": "test_nll", "direction": "minimize", "unit": "nats/token"},
        config=[{"name": "lr", "type": "float", "log": True},
                {"name": "lora_rank", "type": "int", "log": True}],
        fidelity=["params", "active_params"],
        fidelity_label="level",
        cost={"column": "cost_hours"},
        experiment="experiment",
        test=TEST,
        sources=["tinker_cookbook"],
        notes=__doc__,
        diverged={"column": "status", "flag": "diverged"},
    )
    return build_task(spec, experiment_runs())
