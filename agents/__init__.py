"""LLM agents and the trained AutoLLMResearch-style policy (see configs/methods.yaml)."""
