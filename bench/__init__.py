"""LLMConfig-Bench: configure expensive LLM experiments from cheap ones, on real outcomes."""

__version__ = "0.1.0"
