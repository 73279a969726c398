"""The prompted LLM agent end to end: the real SDK clients against a local fake server (tests/fake_llm.py)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.llm.answer import AnswerError, Form, extract_json
from agents.llm.prompt import render, tokens
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task
from bench.methods import method, resolve_methods
from bench.store import EpisodeKey, Store
from tests.fake_llm import Answer, FakeLLM

KEY = "sk-test-5ecret-value-0123456789"


def researcher(record) -> str:
    """A scripted researcher: the first listed candidate, or the best cheap run's configuration."""
    prompt = record["messages"][0][1]
    listed = re.search(r"## Untried candidates.*?\n[^\n]*\n(\d+),", prompt)
    if listed:
        return json.dumps({"reasoning": "the first listed candidate", "candidate": int(listed.group(1))})
    header, row = re.search(r"best first:\n([^\n]+)\n([^\n]+)", prompt).groups()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    params = list(record["schema"]["properties"]["config"]["properties"])
    config = {p: float(values[p]) for p in params}
    return "Thinking aloud first.\n```json\n" + json.dumps(
        {"reasoning": "the best cheap run transfers", "config": config}) + "\n```"


def _env(tmp_path, server, **extra):
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache"), "OPENAI_BASE_URL": server.openai_base_url,
           "OPENAI_API_KEY": KEY, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def _bench(args, env):
    return subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def _trials(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.rglob("*.jsonl")) for line in p.read_text().splitlines()]


def _run_agent(problem, task, experiment, seed, responder, monkeypatch, tmp_path, method_name="openai:fake",
               **params):
    """One episode in-process through `run_episode` (real SDK, fake server); `params` update the
    method's parameters."""
    from bench.episode import run_episode

    with FakeLLM(responder, key=KEY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
        store = Store(tmp_path / "out")
        budget = problem.budget
        key = EpisodeKey("t", task.name, method_name, experiment, budget.kind, budget.amount, seed)
        spec = method(method_name)
        spec = spec.model_copy(update={"params": {**spec.params, **params}})
        summary = run_episode(key, task, spec, store)
        return summary, _trials(tmp_path / "out"), server.requests


@pytest.fixture(scope="module")
def pretrain():
    task = load_task("pretrain_hparams")
    exp = task.split("test")[0]
    return task, exp


def test_cli_episode_then_replay_from_cache_with_no_network(tmp_path):
    """`bench run --method openai:MODEL --suite quick` against the fake server; a second run into
    a new directory is served entirely from the cache (no server, no credentials) and is identical."""
    with FakeLLM(researcher, key=KEY) as server:
        env = _env(tmp_path, server)
        first = _bench(["run", "--task", "data_mixture", "--method", "openai:fake-model", "--suite", "quick",
                        "--out", str(tmp_path / "a"), "--quiet"], env)
        assert first.returncode == 0, first.stderr
        served = len(server.requests)
    assert served >= 24  # 2 experiments x (1 + 5 trials) x 2 seeds
    replay_env = _env(tmp_path, server, OPENAI_BASE_URL=None, OPENAI_API_KEY=None)
    second = _bench(["run", "--task", "data_mixture", "--method", "openai:fake-model", "--suite", "quick",
                     "--out", str(tmp_path / "b"), "--quiet"], replay_env)
    assert second.returncode == 0, second.stderr
    a, b = _trials(tmp_path / "a"), _trials(tmp_path / "b")
    strip = lambda r: {k: v for k, v in r.items() if k != "ask_seconds"}  # noqa: E731
    assert [strip(r) | {"info": {**r["info"], "cached": 0}} for r in a] == \
        [strip(r) | {"info": {**r["info"], "cached": 0}} for r in b]
    assert all(r["info"]["cached"] == r["info"]["requests"] for r in b)
    reasons = {"the best cheap run transfers", "the first listed candidate"}
    assert {r["info"]["rationale"] for r in a} <= reasons
    assert all(r["info"]["tokens_in"] > 100 and r["info"]["fallback"] is None for r in a)
    board = _bench(["leaderboard", "--runs", str(tmp_path / "a")], env)
    assert board.returncode == 0, board.stderr
    lb = pd.read_csv(tmp_path / "a" / "leaderboard.csv")
    assert (lb.tokens_in_mean > 0).all() and (lb.fallbacks == 0).all()
    assert lb.dollars_total.isna().all()  # a model without a price gets no dollar estimate
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:  # logs, markers, cache, leaderboard
        assert KEY.encode() not in path.read_bytes(), path


def test_malformed_then_repaired_answer(pretrain, monkeypatch, tmp_path):
    task, exp = pretrain
    calls = []

    def flaky(record):
        calls.append(record)
        if len(record["messages"]) == 1:
            return "I think the learning rate should be around 3e-3 {not json"
        return researcher({**record, "messages": record["messages"][:1]})

    problem = task.problem(exp, Budget("trials", 3))
    summary, trials, _ = _run_agent(problem, task, exp, 0, flaky, monkeypatch, tmp_path)
    assert summary.failed is None and summary.usage["fallbacks"] == 0 and len(trials) == 3
    retry = calls[1]["messages"]
    assert retry[1] == ("assistant", "I think the learning rate should be around 3e-3 {not json")
    assert "no JSON object found" in retry[2][1]
    assert all(len(t["info"]["attempts"]) == 1 and t["info"]["requests"] == 2 for t in trials)


def test_out_of_space_values_are_asked_again_with_the_error(monkeypatch, tmp_path):
    task = load_task("data_mixture")
    exp = task.split("test")[0]
    seen = []

    def wild(record):
        seen.append(record)
        if len(record["messages"]) == 1:
            params = record["schema"]["properties"]["config"]["properties"]
            return json.dumps({"reasoning": "all in", "config": {p: 7.0 for p in params}})
        return researcher({**record, "messages": record["messages"][:1]})

    problem = task.problem(exp, Budget("trials", 1))
    summary, trials, _ = _run_agent(problem, task, exp, 0, wild, monkeypatch, tmp_path,
                                    pool_limit=0)  # the pool is not listed: the agent answers a config
    assert summary.failed is None and summary.usage["fallbacks"] == 0
    assert "=7.0 is outside [0, " in seen[1]["messages"][2][1]
    assert trials[0]["snapped"]  # a configuration, snapped to the nearest candidate


def test_never_valid_falls_back_to_a_logged_random_candidate(pretrain, monkeypatch, tmp_path):
    task, exp = pretrain
    problem = task.problem(exp, Budget("trials", 3))
    summary, trials, requests = _run_agent(problem, task, exp, 0, lambda r: '{"candidate": -1}',
                                           monkeypatch, tmp_path)
    assert summary.failed is None and summary.usage["fallbacks"] == 3 and summary.trials == 3
    assert len(requests) == 9  # 1 + 2 re-asks per trial
    assert all("not one of the listed" in t["info"]["fallback"] for t in trials)
    assert len({t["config"]["lr"] for t in trials}) >= 2  # random untried candidates


def test_gemini_protocol_episode(pretrain, monkeypatch, tmp_path):
    task, exp = pretrain
    problem = task.problem(exp, Budget("trials", 2))
    summary, trials, requests = _run_agent(problem, task, exp, 1, researcher, monkeypatch, tmp_path,
                                           method_name="gemini:fake-gemini")
    assert summary.failed is None and len(trials) == 2
    assert {r["protocol"] for r in requests} == {"gemini"}
    assert requests[0]["schema"]["required"] == ["reasoning", "candidate"]


def test_bad_key_stops_the_run_with_one_message_and_no_key_anywhere(tmp_path):
    with FakeLLM(researcher, key="the-right-key") as server:
        env = _env(tmp_path, server)
        done = _bench(["run", "--task", "pretrain_hparams", "--method", "random,openai:fake",
                       "--suite", "quick", "--out", str(tmp_path / "out"), "--quiet"], env)
    assert done.returncode == 2, done.stderr
    assert "OPENAI_API_KEY" in done.stderr and "Traceback" not in done.stderr
    assert KEY not in done.stderr + done.stdout
    assert not list((tmp_path / "out").rglob("*openai*/**/*.done.json"))  # nothing scored
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path


def test_method_all_includes_llm_presets_only_when_they_can_run(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert not {"gpt-5", "gemini-pro"} & set(resolve_methods("all"))
    assert "OPENAI_API_KEY" in " ".join(method("gpt-5").missing())
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    assert "gpt-5" in resolve_methods("all") and "gemini-pro" not in resolve_methods("all")


def test_prompt_never_holds_unobtained_target_outcomes(pretrain):
    """The rendered prompt is the same whatever the test experiment's target outcomes are."""
    import dataclasses

    task, exp = pretrain
    target = task.experiment(exp).target.name
    table = task.table.copy()
    at_target = (table.experiment == exp) & (table.fidelity == target)
    table.loc[at_target, "value"] = np.random.default_rng(0).normal(50, 10, at_target.sum())
    noisy = dataclasses.replace(task, table=table)
    prompts = []
    for t in (task, noisy):
        problem = t.problem(exp, Budget("trials", 3), seed=4)
        ids = np.arange(len(problem.arrays()))
        prompts.append(render(problem, [], True, ids))
    assert prompts[0] == prompts[1]
    assert "## Untried candidates" in prompts[0] and tokens(prompts[0]) < 8000


def test_prompt_lists_own_trials_and_fits_the_budget_on_every_task():
    for name in ("data_mixture", "pretrain_hparams", "architecture", "grpo", "sft_lora"):
        task = load_task(name)
        exp = task.split("test")[0]
        problem = task.problem(exp, Budget("trials", 5))
        pool = problem.arrays()
        query = Query(dict(pool.records[0]), problem.target, 0, info={"rationale": "try the first"})
        from bench.gym.problem import Outcome
        history = [(query, Outcome(1.2345, 1.0, dict(pool.records[0]), problem.target, False, 0.0, 0))]
        text = render(problem, history, len(pool) <= 100, np.arange(1, min(len(pool), 100)))
        assert "-> 1.234" in text and "your reasoning: try the first" in text, name
        assert tokens(text) <= 8000, (name, tokens(text))


def test_answer_parsing_is_robust_and_strict():
    task = load_task("pretrain_hparams")
    form = Form(task.space, by_id=False)
    good = form.parse('Sure!\n```json\n{"reasoning": "x", "config": {"lr": "0.003", "bs": 256}}\n```')
    assert good.config == {"lr": 0.003, "bs": 256}
    prose = 'blah {"a": 1} then {"reasoning": "", "config": {"lr": 0.001, "bs": 64.0}}'
    assert form.parse(prose).config["bs"] == 64
    for bad, why in [('{"config": {"lr": 0.003}}', "missing"), ('{"config": {"lr": 5, "bs": 64}}', "outside"),
                     ('{"config": {"lr": 0.003, "bs": 64.5}}', "integer"), ("no json", "no JSON")]:
        with pytest.raises(AnswerError, match=why):
            form.parse(bad)
    by_id = Form(task.space, by_id=True, ids=frozenset({3, 5}))
    assert by_id.parse('{"reasoning": "r", "candidate": "5"}').candidate == 5
    with pytest.raises(AnswerError, match="not one of the listed"):
        by_id.parse('{"reasoning": "r", "candidate": 4}')
    schema = form.schema()
    assert schema["properties"]["config"]["required"] == list(task.space)
    assert extract_json('{"a": {"b": 1}}') == {"a": {"b": 1}}


def test_fake_answer_status_is_honoured_by_the_agent(pretrain, monkeypatch, tmp_path):
    """A 429 then success: the SDK retries and the episode goes on."""
    task, exp = pretrain
    state = {"n": 0}

    def limited(record):
        state["n"] += 1
        return Answer(status=429, retry_after="0") if state["n"] == 1 else researcher(record)

    problem = task.problem(exp, Budget("trials", 1))
    summary, trials, requests = _run_agent(problem, task, exp, 0, limited, monkeypatch, tmp_path)
    assert summary.failed is None and len(requests) == 2 and trials[0]["info"]["requests"] == 1


def test_model_names_with_slashes_stay_one_folder(pretrain, monkeypatch, tmp_path):
    """`openai:Qwen/Qwen3-8B` (a local server's model name) is one method folder, and scored."""
    from bench.metrics import episodes_frame

    task, exp = pretrain
    problem = task.problem(exp, Budget("trials", 1))
    summary, trials, _ = _run_agent(problem, task, exp, 0, researcher, monkeypatch, tmp_path,
                                    method_name="openai:Qwen/Qwen3-8B")
    assert summary.failed is None and len(trials) == 1
    frame = episodes_frame(Store(tmp_path / "out").summaries())
    assert list(frame.method) == ["openai:Qwen/Qwen3-8B"]
