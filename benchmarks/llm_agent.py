"""The LLM agent's prompt size per task and its overhead per step on a cached replay.

    python benchmarks/llm_agent.py            # every built-in task, one test experiment each
    python benchmarks/llm_agent.py --show     # also print the transcript of one episode

Runs the real `openai` client against the local fake server of the tests (tests/fake_llm.py, a
scripted researcher: the first listed candidate, or the best cheap run), one T=5 episode per task
(seed 0) into a temporary cache, then the same episode again from the cache. Printed per task:
prompt tokens (characters / 4) of the first and the last trial, whether the agent answers by id,
milliseconds per ask live (local HTTP round trip included) and replayed (no network).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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


if __name__ == "__main__":
    main("--show" in sys.argv)
