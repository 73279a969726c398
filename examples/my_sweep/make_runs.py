"""Writes runs.csv: a synthetic but plausible learning-rate x batch-size sweep (deterministic).

Three model shapes (hidden width 512, 1024, 2048; the experiments), each trained at four
(depth, tokens) levels: 4 and 8 layers on 10 tokens per parameter, 8 and 16 layers on 40.
Non-embedding parameters N = 12 * layers * width^2. The loss is a Chinchilla fit
(E + A/N^0.34 + B/D^0.28, Hoffmann et al. 2022) plus a quadratic bowl in log learning rate and
log batch size around Step Law's optimum (lr* = 1.79 N^-0.713 D^0.307, batch* = 0.58 D^0.571
tokens; Li et al. 2025), Gaussian seed noise (sd 0.004), and divergence (loss ~7.5) beyond 4 lr*.
The learning-rate grid is shared; the batch-size grid (powers of two) follows each level's
batch*, so configurations only partly coincide across levels. gpu_hours: 6ND FLOPs at 312 TFLOP/s
and an MFU that grows with width. Run: python examples/my_sweep/make_runs.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

SEQ_LEN = 2048
LRS = [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]
LEVELS = [(4, 10), (8, 10), (8, 40), (16, 40)]  # (layers, tokens per parameter)
MFU = {512: 0.30, 1024: 0.38, 2048: 0.45}


def loss(n: float, d: float, lr: float, bs: int, rng: np.random.Generator) -> float:
    lr_opt = 1.79 * n**-0.713 * d**0.307
    bs_opt = 0.58 * d**0.571 / SEQ_LEN
    if lr > 4 * lr_opt:
        return 7.5 + rng.normal(0, 0.3)
    base = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
    bowl = 0.02 * np.log(lr / lr_opt) ** 2 + 0.01 * np.log(bs / bs_opt) ** 2
    return base + bowl + rng.normal(0, 0.004)


def runs() -> pd.DataFrame:
    rng = np.random.default_rng(2025)
    rows = []
    for width in (512, 1024, 2048):
        for layers, per_param in LEVELS:
            n = 12 * layers * width**2
            d = per_param * n
            centre = int(np.round(np.log2(0.58 * d**0.571 / SEQ_LEN)))
            for bs in [2 ** max(k, 0) for k in range(centre - 2, centre + 3)]:
                for lr in LRS:
                    rows.append({
                        "shape": f"h{width}", "layers": layers, "params": n, "tokens": d,
                        "lr": lr, "batch_size": bs, "loss": round(loss(n, d, lr, bs, rng), 4),
                        "gpu_hours": float(f"{6 * n * d / (312e12 * MFU[width]) / 3600:.3g}"),
                    })
    return pd.DataFrame(rows).drop_duplicates(["shape", "params", "tokens", "lr", "batch_size"])


if __name__ == "__main__":
    runs().to_csv(Path(__file__).with_name("runs.csv"), index=False)
