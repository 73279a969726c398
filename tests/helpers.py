"""Shared test helpers: a scripted optimizer, a mixed-type task, a plain ask/tell driver."""

import numpy as np
import pandas as pd

from bench.gym.problem import Query
from bench.gym.spec import TaskSpec, build_task
from bench.optimizer import Optimizer


class Scripted(Optimizer):
    """Asks the given learning rates, in order."""

    def __init__(self, problem, seed, lrs=()):
        super().__init__(problem, seed)
        self.lrs = list(lrs)

    def ask(self) -> Query:
        return self.query({"lr": self.lrs[len(self.history)]})


def mixed_task(direction="minimize", fidelities=((1e6, 1e9, 1.0, 30), (1e8, 1e10, 0.0, 30))):
    """Log float, log int, int, categorical and constant parameters; different configs per fidelity.

    `fidelities`: (params, tokens, loss shift, number of configurations) per fidelity.
    """
    rng = np.random.default_rng(0)
    rows = []
    for params, tokens, shift, n in fidelities:
        for _ in range(n):
            lr, layers = 10 ** rng.uniform(-4, -1), int(rng.integers(2, 25))
            batch, opt = int(2 ** rng.integers(5, 13)), str(rng.choice(["adam", "sgd", "lion"]))
            loss = (np.log10(lr) + 2.5) ** 2 + 0.01 * layers + 0.1 * (opt == "sgd") + shift
            rows.append({"lr": lr, "layers": layers, "batch": batch, "opt": opt, "warmup": 100,
                         "params": params, "tokens": tokens, "loss": loss})
    spec = TaskSpec(name="mixed", objective={"column": "loss", "direction": direction},
                    config=["lr", "layers", "batch", "opt", "warmup"], fidelity=["params", "tokens"])
    return build_task(spec, pd.DataFrame(rows))


def drive(problem, oracle, optimizer, n):
    outcomes = []
    for _ in range(n):
        query = optimizer.ask()
        outcome = oracle.evaluate(query)
        optimizer.tell(query, outcome)
        outcomes.append(outcome)
    return outcomes
