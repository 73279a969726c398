"""LLMConfig-Gym: tasks, experiments, fidelities, outcome tables and the problems optimizers see."""
