"""The LLM agent's prompt size per task and its overhead per step on a cached replay.

    python benchmarks/llm_agent.py            # every built-in task, one test experiment each
    python benchmarks/llm_agent.py --show     # also print the transcript of one episode
    python benchmarks/llm_agent.py --real     # also the real model of preset smollm2-135m (minutes)

Runs the real `openai` client against the local fake server of the tests (tests/fake_llm.py, a
scripted researcher: the first listed candidate, or the best cheap run), one T=5 episode per task
(seed 0) into a temporary cache, then the same episode again from the cache. Printed per task:
prompt tokens (characters / 4) of the first and the last trial, whether the agent answers by id,
milliseconds per ask live (local HTTP round trip included) and replayed (no network).

`--real` then runs the preset `smollm2-135m` (SmolLM2-135M-Instruct on CPU, served by this process)
live, one T=2 episode per task (seed 0), with constrained decoding (the preset: no re-asks) and
without it, as against a server that has none (`structured: false`: the schema is not sent, replies
are parsed from free text, an unusable one is asked again twice). Printed per task and mode: the
model's load time and its speed once (prompt tokens per second on a 2,000-token prompt, generated
tokens per second on a short one), then per task and mode: prompt tokens per request (the model's
tokenizer), generated tokens per request, generated tokens per second of asking (prompt
processing included), seconds per ask, requests per ask and the fallback rate.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.llm.prompt import tokens  # noqa: E402
from bench.episode import run_episode  # noqa: E402
from bench.gym.registry import load_task, task_names  # noqa: E402
from bench.methods import method  # noqa: E402
from bench.store import EpisodeKey, Store  # noqa: E402
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.test_llm_agent import researcher  # noqa: E402


def main(show: bool) -> None:
    prompts: list[str] = []

    def recording(record):
        prompts.append(record["messages"][0][1])
        return researcher(record)

    with tempfile.TemporaryDirectory() as tmp, FakeLLM(recording, key="bench") as server:
        os.environ.update(BENCH_CACHE=tmp, OPENAI_BASE_URL=server.openai_base_url, OPENAI_API_KEY="bench")
        spec = method("openai:fake")
        print(f"{'task':24s} {'experiment':28s} {'by id':>5s} {'tokens first':>12s} {'last':>6s} "
              f"{'live ms/ask':>11s} {'replay ms/ask':>13s}")
        for name in task_names():
            task = load_task(name)
            exp = task.split("test")[0]
            timings = []
            for run in ("live", "replay"):
                prompts.clear()
                key = EpisodeKey(run, task.name, spec.name, exp, "trials", 5, 0)
                out = Path(tmp) / run
                s = run_episode(key, task, spec, Store(out))
                timings.append(1e3 * s.ask_seconds / s.trials)
                if run == "live":
                    live = list(prompts)
                    first, last = tokens(prompts[0]), tokens(prompts[-1])
                    by_id = "## Untried candidates" in prompts[0]
                    log = Store(out).trial_log(key)
            print(f"{name:24s} {exp:28s} {str(by_id):>5s} {first:12d} {last:6d} "
                  f"{timings[0]:11.1f} {timings[1]:13.2f}")
            if show and name == "pretrain_hparams":
                print("\n--- last prompt of the pretrain_hparams episode ---\n" + live[-1])
                for line in log.read_text().splitlines():
                    r = json.loads(line)
                    print(f"trial {r['t']}: {r['config']} -> {r['value']:.4f}; "
                          f"reasoning: {r['info']['rationale']!r}")
                print("---\n")


def real(budget: int = 2) -> None:
    import openai

    from agents.llm import local
    from agents.llm.agent import REASKS

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_CACHE"] = tmp
        start = time.perf_counter()
        server = local.server("smollm2-135m", "smollm2-135m")
        print(f"\nsmollm2-135m: model loaded and served in {time.perf_counter() - start:.1f} s")
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        for what, text, most in [("prompt", "0," * 1000 + "\nHow many zeros?", 1),
                                 ("generated", "Count from 1 to 100, separated by commas.", 64)]:
            start = time.perf_counter()
            reply = client.chat.completions.create(model="smollm2-135m", max_tokens=most, temperature=0,
                                                   messages=[{"role": "user", "content": text}])
            seconds, usage = time.perf_counter() - start, reply.usage
            count = usage.prompt_tokens if what == "prompt" else usage.completion_tokens
            print(f"{what} tokens/s: {count / seconds:.0f} ({count} in {seconds:.1f} s)")
        print(f"episodes: T={budget}, seed 0, live")
        print(f"{'task':24s} {'decoding':11s} {'tokens in/req':>13s} {'out/req':>7s} {'tok/s':>6s} "
              f"{'s/ask':>6s} {'req/ask':>7s} {'fallbacks':>9s}")
        preset = method("smollm2-135m")
        for name in task_names():
            task = load_task(name)
            exp = task.split("test")[0]
            for structured in (True, False):
                os.environ["BENCH_CACHE"] = str(Path(tmp) / f"{name}-{structured}")  # a fresh response cache
                free = {} if structured else {"structured": False, "reasks": REASKS}
                spec = preset.model_copy(update={"params": {**preset.params, **free}})
                key = EpisodeKey("real", task.name, spec.name, exp, "trials", budget, 0)
                store = Store(Path(tmp) / "runs")
                s = run_episode(key, task, spec, store)
                infos = [json.loads(line)["info"] for line in store.trial_log(key).read_text().splitlines()]
                requests = sum(i["requests"] for i in infos)
                out, seconds = sum(i["tokens_out"] for i in infos), s.ask_seconds
                fallbacks = f"{sum(bool(i['fallback']) for i in infos)}/{s.trials}"
                print(f"{name:24s} {'constrained' if structured else 'free':11s} "
                      f"{sum(i['tokens_in'] for i in infos) / requests:13.0f} {out / requests:7.1f} "
                      f"{out / seconds:6.1f} {seconds / s.trials:6.2f} {requests / s.trials:7.2f} "
                      f"{fallbacks:>9s}")


if __name__ == "__main__":
    main("--show" in sys.argv)
    if "--real" in sys.argv:
        real()
