"""LLM agents: provider adapters, prompts and answer parsing."""
