"""The paper's figures: normalised regret against target-fidelity trials, one panel per task."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def regret_curves(ep: pd.DataFrame, suite: str, out: Path) -> list[Path]:
    """Anytime nregret (mean ± s.e.) of each method's largest-budget episodes; PNG and PDF."""
    ep = ep[(ep.suite == suite) & (ep.budget_kind == "trials")]
    tasks = sorted(ep.task.unique())
    if not tasks:
        return []
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = ep[ep.task == task]
        sub = sub[sub.budget == sub.budget.max()]
        for method, grp in sorted(sub.groupby("method"), key=lambda kv: kv[0]):
            curves = np.array([c for c in grp.nregret_curve if len(c)], dtype=float)
            if curves.size == 0:
                continue
            t = np.arange(1, curves.shape[1] + 1)
            mean = np.nanmean(curves, axis=0)
            sem = np.nanstd(curves, axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
            ax.plot(t, mean, marker="o", ms=3, label=method)
            ax.fill_between(t, mean - sem, mean + sem, alpha=0.2)
        simulated = " (simulated)" if sub.simulated.any() else ""
        ax.set(title=f"{task}{simulated}", xlabel="target-fidelity trials",
               ylabel="nregret (0 = optimum, 1 = median)")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"suite {suite}", fontsize=10)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"regret_{suite}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
