"""Non-LLM optimizers behind the `bench.optimizer.Optimizer` interface; see configs/methods.yaml."""
