"""Ship the LLM replies of reference runs with the package, so anyone replays them without the model.

    python scripts/ship_llm_replays.py smollm2-135m smollm2-135m-sft [--cache PATH]

For each preset, its replies in the response cache (default `$BENCH_CACHE/llm/responses.sqlite`,
under the preset's cache name: a local model's carries its weights' fingerprint) go to
`agents/llm/replays/<cache name>.jsonl.gz` (keys and replies only; sorted, so the same replies give
the same bytes), which `agents.llm.cache` reads after the user's cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.llm.agent import cached_name  # noqa: E402
from agents.llm.cache import SHIPPED, ResponseCache  # noqa: E402
from bench.methods import method  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--cache", type=Path, help="the response cache (default: $BENCH_CACHE's)")
    args = parser.parse_args()
    cache = ResponseCache(args.cache, mode="read")
    for name in args.presets:
        params = method(name).params
        model = cached_name(params["model"], params.get("local"), params.get("weights"))
        path = SHIPPED / f"{quote(model, safe='@-_.')}.jsonl.gz"
        count = cache.ship(params["provider"], model, path)
        print(f"{name}: {count} replies of {model} -> {path} ({path.stat().st_size / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
