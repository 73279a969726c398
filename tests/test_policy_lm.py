"""The LLM backend end to end on CPU: trajectories -> chat JSONL in the agents' prompt format -> a tiny
random causal LM -> SFT -> multi-turn GRPO rewarded by the oracle -> served over the OpenAI API -> one
benchmark episode of the `openai:` agent against it."""

import json
import urllib.error
import urllib.request
from dataclasses import asdict

import numpy as np
import pytest
import torch

from agents.llm.agent import LLMAgent
from agents.llm.answer import Form
from agents.llm.prompt import SYSTEM, Prompting
from agents.llm.providers import Reply
from agents.policy import lm as lm_module
from agents.policy.chat import (
    ChatPolicy,
    answer_text,
    chat_records,
    episode_problem,
    prompting_of,
    read_jsonl,
)
from agents.policy.lm import grpo, sft
from agents.policy.lm_model import load_model
from agents.policy.lm_rollout import EpisodeRollouts, episode_reward, score
from agents.policy.lm_serve import ChatServer
from agents.policy.trajectories import Step, Trajectory
from bench.episode import run_episode
from bench.errors import BenchError
from bench.gym.problem import Budget, Query
from bench.gym.task import Prior
from bench.methods import method
from bench.store import EpisodeKey, Store
from bench.training import train_only
from tests.helpers import bench_here

BUDGET = 2


def play_random(task, experiment, seed, budget=BUDGET) -> Trajectory:
    """A teacher stand-in: uniformly drawn target candidates, each step with a rationale."""
    problem = task.problem(experiment, Budget("trials", budget), Prior(), seed)
    oracle = task.oracle(experiment, seed)
    steps = []
    for i in np.random.default_rng(seed).permutation(len(problem.arrays()))[:budget]:
        outcome = oracle.evaluate(Query(dict(problem.arrays().records[i]), problem.target, int(i)))
        steps.append(Step(int(i), outcome.value, f"lr {outcome.config['lr']:.3g} follows the cheap trend"))
    best = task.objective.best([s.value for s in steps])
    return Trajectory(experiment, Prior(), budget, seed, "random", tuple(steps),
                      float(oracle.scorer.pregret(best)), task.name)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only waits (ms per matmul)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def train_task(tiny_task):
    return train_only(tiny_task)


@pytest.fixture
def trajectories(train_task):
    return [play_random(train_task, "a", seed) for seed in range(4)]


def post(url: str, body: dict) -> tuple[int, dict]:
    """(HTTP status, JSON reply) of a POST."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class ScriptedClient:
    """Stands in for the agent's cached provider: records each request, answers the given texts."""

    model = "scripted"

    def __init__(self, answers):
        self.answers, self.requests = iter(answers), []

    def complete(self, request):
        self.requests.append(request)
        return Reply(next(self.answers), "", 0, 0), False


@pytest.mark.parametrize("preset", [None, "smollm2-135m"])
def test_chat_records_are_the_agents_prompts_and_answers(train_task, trajectories, cache, preset):
    """The records are what the agent sends and accepts, with the large models' prompting and with
    a small model's preset (compact prompts, capped reasoning)."""
    prompting = Prompting.of(method(preset).params) if preset else Prompting()
    records = list(chat_records(train_task, trajectories, prompting))
    assert len(records) == sum(len(t.steps) for t in trajectories)
    assert prompting_of(records) == prompting
    for trajectory in trajectories:
        mine = [r for r in records if r["meta"]["seed"] == trajectory.seed]
        problem = episode_problem(train_task, mine[0]["meta"])
        oracle = train_task.oracle(trajectory.experiment, trajectory.seed)
        agent = LLMAgent(problem, trajectory.seed, provider="openai", model="scripted", **asdict(prompting))
        agent.client = ScriptedClient([r["messages"][2]["content"] for r in mine])
        for t, (record, step) in enumerate(zip(mine, trajectory.steps, strict=True)):
            system, user, assistant = record["messages"]
            assert record["meta"] == {"task": train_task.name, "experiment": "a", "budget": BUDGET,
                                      "prior": ["cheaper", None, None], "seed": trajectory.seed, "step": t,
                                      "prompting": asdict(prompting)}
            query = agent.ask()  # the real agent, answered with the record's assistant message
            request = agent.client.requests[-1]
            assert (system["content"], [("user", user["content"])]) == (SYSTEM, list(request.messages))
            assert query.candidate == step.candidate and query.info["fallback"] is None
            answer = {"reasoning": step.rationale[:prompting.reasoning_chars], "candidate": step.candidate}
            assert json.loads(assistant["content"]) == answer
            agent.tell(query, oracle.evaluate(query))
        assert f"(your reasoning: {trajectory.steps[0].rationale})" in mine[1]["messages"][1]["content"]


def test_config_answers_parse_to_the_candidate(train_task):
    problem = train_task.problem("a", Budget("trials", 2), Prior(), 3)
    form = Form(problem.space, by_id=False)
    for candidate in range(len(problem.arrays())):
        parsed = form.parse(answer_text(problem, form, candidate, "why"))
        assert parsed.config == dict(problem.arrays().records[candidate]) and parsed.reasoning == "why"


def test_a_trajectory_that_does_not_replay_is_refused(train_task, trajectories):
    t = trajectories[0]
    wrong = Trajectory(t.experiment, t.prior, t.budget, t.seed, t.teacher,
                       (Step(t.steps[0].candidate, t.steps[0].value + 1.0, "x"),), t.pregret)
    with pytest.raises(BenchError, match="does not replay"):
        list(chat_records(train_task, [wrong]))


def test_rewards_come_from_the_oracle(train_task):
    problem = train_task.problem("a", Budget("trials", 2), Prior(), 1)
    oracle = train_task.oracle("a", 1)
    values = oracle.target_values()[train_task.permutation("a", problem.target, 1)]  # episode order
    best, worst = int(np.argmin(values)), int(np.argmax(values))
    worst_reward = score(problem, oracle, oracle.scorer.worst)
    assert worst_reward == pytest.approx(-np.mean(values < values.max()))  # -pregret: the share better

    def rewards(*replies, seed=1):
        policy = ChatPolicy(problem, seed)  # the seed draws the fallback of an unusable reply
        for reply in replies:
            query = policy.answer(*policy.prompt(), reply)
            policy.tell(query, oracle.evaluate(query))
        return episode_reward(problem, oracle, policy)

    optimum = json.dumps({"reasoning": "r", "candidate": best})
    assert rewards(optimum) == [0.0]  # the best reward there is
    assert rewards("garbage {not json") == [worst_reward]  # the worst
    assert rewards(json.dumps({"reasoning": "r", "candidate": 99})) == [worst_reward]  # not a listed id
    fallback = ChatPolicy(problem, 0).random_candidate()
    assert fallback != dict(problem.arrays().records[best])
    assert rewards("garbage", optimum, seed=0) == [worst_reward, 0.0]  # the valid trial: the episode's return
    assert rewards(json.dumps({"reasoning": "r", "candidate": worst}), optimum) == [0.0, 0.0]
    assert rewards(json.dumps({"reasoning": "r", "candidate": worst})) == [worst_reward]


def test_bad_inputs_end_with_one_message(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}], "meta": {}}\n')
    assert bench_here(monkeypatch, "lm", "tiny", "--data", str(bad), "--out", str(tmp_path / "m")) == 2
    assert "bad.jsonl:1: not a chat record" in capsys.readouterr().err
    assert bench_here(monkeypatch, "lm", "serve", str(tmp_path)) == 2
    assert "is not a model directory" in capsys.readouterr().err
    (tmp_path / "t.json").write_text('{"not": "a list"}')
    assert bench_here(monkeypatch, "lm", "export", "--task", "data_mixture", "--trajectories",
                 str(tmp_path / "t.json"), "--out", str(tmp_path / "c.jsonl")) == 2
    assert "not a JSON list of trajectories" in capsys.readouterr().err


def test_export_sft_grpo_serve_and_run_an_episode(tiny_task, train_task, trajectories, tmp_path, monkeypatch,
                                                   cache):
    torch.manual_seed(0)
    data = tmp_path / "chat.jsonl"
    from agents.policy.chat import export

    assert export(train_task, trajectories, data) == len(read_jsonl(data)) == 8
    assert bench_here(monkeypatch, "lm", "tiny", "--data", str(data), "--out", str(tmp_path / "tiny")) == 0
    initial, tokenizer = load_model(tmp_path / "tiny")
    assert len(tokenizer.apply_chat_template(read_jsonl(data)[0]["messages"])["input_ids"]) < 1000

    history = sft(data, tmp_path / "tiny", tmp_path / "sft", steps=6, batch_size=4, learning_rate=3e-3,
                  train_layers=1)
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 6 and losses[-1] < losses[0]
    tuned, _ = load_model(tmp_path / "sft")
    before, after = dict(initial.named_parameters()), dict(tuned.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(n.startswith(("model.layers.1.", "model.norm.")) for n in changed)  # top only

    played = []

    class Recorded(EpisodeRollouts):
        def __call__(self, prompts, trainer):
            out = super().__call__(prompts, trainer)
            played.append(out)
            return out

    monkeypatch.setattr(lm_module, "EpisodeRollouts", Recorded)
    history = grpo([train_task], data, tmp_path / "sft", tmp_path / "grpo", turns=2, episodes=2, steps=2,
                   max_new_tokens=12)
    logged = [h["reward"] for h in history if "reward" in h]
    assert len(played) == len(logged) == 2
    problem = episode_problem(train_task, {**read_jsonl(data)[0]["meta"], "budget": 2})
    oracle = train_task.oracle("a", 0)
    possible = {score(problem, oracle, v) for v in oracle.target_values()} | {score(problem, oracle,
                                                                                    oracle.scorer.worst)}
    for out, reward in zip(played, logged, strict=True):
        assert len(out["prompt_ids"]) == 4  # 2 episodes x 2 trials, each trial one sample
        trials = [tokenizer.decode(ids) for ids in out["prompt_ids"]]
        assert ["(this is trial 1)" in t for t in trials] == [True, False, True, False]
        assert ["(this is trial 2)" in t for t in trials] == [False, True, False, True]
        assert all(min(abs(r - p) for p in possible) < 1e-9 for r in out["episode_reward"])
        assert reward == pytest.approx(np.mean(out["episode_reward"]), abs=1e-6)
    load_model(tmp_path / "grpo")

    with ChatServer(tmp_path / "grpo", name="tiny-lm", port=0, max_new_tokens=8) as server:
        with urllib.request.urlopen(server.base_url + "/models", timeout=10) as reply:
            assert json.load(reply)["data"][0]["id"] == "tiny-lm"
        url = server.base_url + "/chat/completions"
        assert post(url, {"model": "other", "messages": [{"role": "user", "content": "hi"}]})[0] == 404
        assert post(url, {"model": "tiny-lm", "messages": "hi"})[0] == 400
        parts = [{"type": "text", "text": "hi"}]
        ask = {"model": "tiny-lm", "messages": [{"role": "user", "content": parts}],
               "max_completion_tokens": 5, "seed": 7, "response_format": {"type": "json_object"}}
        (status, first), (_, again) = post(url, ask), post(url, ask)
        assert status == 200 and first["choices"][0]["message"] == again["choices"][0]["message"]  # seeded
        assert 0 < first["usage"]["completion_tokens"] <= 5 and first["usage"]["prompt_tokens"] > 0
        served = server.requests
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        store = Store(tmp_path / "runs")
        key = EpisodeKey("t", tiny_task.name, "openai:tiny-lm", "b", "trials", BUDGET, 0)
        summary = run_episode(key, tiny_task, method("openai:tiny-lm"), store)
    assert summary.failed is None and summary.target_trials == BUDGET
    logs = (tmp_path / "runs").rglob("*.jsonl")
    trials = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    assert len(trials) == BUDGET
    assert server.requests - served == sum(t["info"]["requests"] for t in trials) >= BUDGET
    assert all(t["info"]["tokens_in"] > 0 for t in trials)
