"""Does a rerun give the same numbers? Compare the episodes two results directories share.

    python scripts/same_episodes.py RERUN REFERENCE      # e.g. REFERENCE = results

For every episode key both hold (packed or loose), the outcome must be equal: the scores, the
recommendation, the anytime curve and the failure reason (timings may differ). Prints how many
are shared and identical and the first differences; exits 0 when all are identical, 1 when one
differs or none is shared, 2 on unreadable results. Use it after rerunning some of the published
cells on your machine (`bench run --out RERUN ...`): README's reproducibility section says which
machines give the same numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.errors import BenchError  # noqa: E402
from bench.store import EpisodeKey, Store  # noqa: E402
from bench.summary import EpisodeSummary  # noqa: E402

SHOWN = 10  # differences printed


def outcome(summary: EpisodeSummary) -> tuple:
    """What a rerun must reproduce of an episode (not its timings)."""
    return summary.scores, summary.recommend, summary.curve, summary.failed


def compare(rerun: Path, reference: Path) -> tuple[int, list[EpisodeKey]]:
    """(episodes both hold, keys of those whose outcome differs)."""
    mine = {key: outcome(summary) for key, summary in Store(rerun).summaries()}
    shared, differ = 0, []
    for key, summary in Store(reference).summaries():
        if key in mine:
            shared += 1
            if mine[key] != outcome(summary):
                differ.append(key)
    return shared, differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rerun", type=Path)
    parser.add_argument("reference", type=Path)
    args = parser.parse_args(argv)
    try:
        shared, differ = compare(args.rerun, args.reference)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{shared} episodes shared, {shared - len(differ)} identical, {len(differ)} differ")
    for key in differ[:SHOWN]:
        print(f"  differs: {key.suite} {key.task} {key.method} {key.experiment} "
              f"{key.budget_kind}={key.budget:g} seed {key.seed}")
    return 0 if shared and not differ else 1


if __name__ == "__main__":
    sys.exit(main())
