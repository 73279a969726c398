"""LLMConfig-Gym: tasks, experiments, fidelities, outcome tables and the problems optimizers see."""


def __getattr__(name: str):
    """`bench.gym.make_env` / `make_vector_env`, imported on first use (Gymnasium is not needed
    by the rest of the harness)."""
    if name in ("make_env", "make_vector_env"):
        from bench.gym import env

        return getattr(env, name)
    raise AttributeError(f"module 'bench.gym' has no attribute {name!r}")
