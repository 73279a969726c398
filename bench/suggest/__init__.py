"""`bench suggest`: the next configurations to run at an expensive fidelity, from a user's runs.

The question is posed as a `Problem` like any episode's, built from the user's runs only:
- Target: a new `Fidelity` from the given descriptors (every fidelity column of the task). Its
  GPU-hours are `--target-cost`, or a power law cost = a * prod d_k^b_k fitted by least squares on
  the task's fidelity levels (exact for the default 6*N*D cost model); with too few levels to fit
  it (at least one more level than coefficients) the user is asked for `--target-cost`. Learned
  methods, SMAC's multi-fidelity rungs and the LLM prompt read it.
- Prior: every run of the experiment, at all its fidelities (shuffled with the seed, as episodes
  are). Target pool: the spec's `target_grid` (cartesian product) or, without one, `SOBOL_POOL`
  scrambled-Sobol points of the space (seeded), plus any `--observed` configuration not in it.
  Both go through `Task.problem`, so ids and orders follow the episode's rules.
- Observed target runs are replayed as an episode's trials: the method asks, and is told the
  user's next run (as the table would tell it a snapped one), so `suggest --observed` continues
  the loop the benchmark scores.
- n at once: the method asks n times; after each ask its candidate is marked pending (the
  untried mask a tell would set, with no outcome told), so pool-based methods move on. The first
  suggestion is what the benchmark would run next; a method that asks the same candidate again
  (it needs an outcome to move, e.g. `centroid` counts its trials) gives fewer than n. Every ask
  obeys the episode rules (`bench.gym.rules`): a bad query is a `MethodError`, a query at another
  fidelity is refused, `MAX_REFUSALS` in a row end the asking, a configuration runs its snapped
  candidate.
- Predictions: `Optimizer.predict` at the suggested candidates after the asks; rationale:
  `Query.info["rationale"]` where the method gives one.
- Learned methods use the checkpoint `bench run` and `--backtest` use (trained on the task's train
  experiments, or every built-in task's for `trains_on: builtin`), so the backtest scores the
  model that advises; a task without train experiments gives the former nothing to learn from,
  and they are skipped with that reason.
- The optimizer's seed is `method_seed(seed)`, as in an episode (the seed itself shuffles the pools).
- `backtest`: on an experiment whose target is in the table, round t rebuilds the method, replays
  t - 1 runs the table answered, and runs its first suggestion: the scores after T rounds equal
  `bench run`'s with budget T (same method and seed): `pregret` (the primary score), `regret`,
  `nregret` and `diverged`, by the experiment's `Scorer` (`Scorer.episode`, so a failure scores
  as the worst candidate, pregret 1, as in the benchmark); "at once" (`pregret_at_once`,
  `nregret_at_once`) scores the best of the first round's n suggestions the same way.

Modules: `target` (the unseen target fidelity and its cost), `pool` (the target pool, the user's
runs, the problem), `advice` (asking a method), `backtest` (scoring the advice where the table
answers), `output` (tables and files).
"""
