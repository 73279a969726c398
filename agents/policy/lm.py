"""The LLM backend of the AutoLLMResearch pipeline: distillation (SFT) and multi-turn RL (GRPO) of a
causal LM with TRL on the chat records of `agents.policy.chat`, in the LLM agents' prompt format,
so the trained model serves as `openai:MODEL` behind any OpenAI-compatible server.

- `sft`: TRL's `SFTTrainer` on the records as conversational prompt-completion pairs ([system,
  user] -> [assistant]), the loss on the completion only, so any chat template works (no
  generation markers needed).
- `grpo`: TRL's `GRPOTrainer` from the SFT model with a custom `rollout_func`
  (`agents.policy.lm_rollout`): whole episodes of `turns` trials played in the agent's protocol,
  rewarded by the oracle from the episode's final normalised regret.

Both write a model directory (`save_pretrained`: weights, tokenizer, chat template) and return the
logged training history. Everything runs on CPU (slowly) or on a GPU when one is visible.
"""

from __future__ import annotations

import json
from pathlib import Path

from agents.policy.chat import prompting_of, read_jsonl
from agents.policy.lm_model import load_model, require_lm
from agents.policy.lm_rollout import EpisodeRollouts
from bench.errors import BenchError
from bench.gym.task import Task


def sft(data: Path, model_dir: Path, out: Path, *, steps: int = 200, batch_size: int = 4,
        learning_rate: float = 1e-4, max_length: int = 8192, train_layers: int | None = None,
        seed: int = 0) -> list[dict]:
    """Behaviour cloning of the model in `model_dir` on the chat JSONL `data`; saved to `out`.
    `train_layers`: train only the top that many decoder layers and the final norm (None: all)."""
    require_lm()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    records = read_jsonl(data)
    model, tokenizer = load_model(model_dir)
    _train_top(model, train_layers)
    dataset = Dataset.from_list([{"prompt": r["messages"][:2], "completion": r["messages"][2:]}
                                 for r in records])
    config = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch_size,
                       learning_rate=learning_rate, max_length=max_length, truncation_mode="keep_end",
                       completion_only_loss=True, logging_steps=1, save_strategy="no", report_to="none",
                       seed=seed, data_seed=seed, disable_tqdm=True, **_device())
    try:
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    except ValueError as exc:  # e.g. records TRL cannot tokenise with the model's chat template
        raise BenchError(f"SFT cannot start on {model_dir}: {exc}") from None
    trainer.train()
    _save(trainer, tokenizer, out)
    return trainer.state.log_history


def episode_specs(records: list[dict]) -> list[str]:
    """The distinct episodes (task, experiment, prior, seed) of chat records, as the JSON prompts of GRPO."""
    specs = {json.dumps({k: r["meta"][k] for k in ("task", "experiment", "prior", "seed")}, sort_keys=True)
             for r in records}
    return sorted(specs)


def grpo(tasks: list[Task], data: Path, model_dir: Path, out: Path, *, turns: int = 3, episodes: int = 4,
         steps: int = 100, learning_rate: float = 1e-6, max_new_tokens: int = 256, temperature: float = 1.0,
         beta: float = 0.0, train_layers: int | None = None, seed: int = 0) -> list[dict]:
    """Multi-turn GRPO of the model in `model_dir` (the SFT model) on the episodes of the chat JSONL
    `data` (played on `tasks`, a record's by its name; records without one on the only task): each
    step plays `episodes` episodes of `turns` trials of one spec."""
    require_lm()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if turns < 1 or episodes < 1 or turns * episodes < 2:
        raise BenchError(f"GRPO needs turns >= 1, episodes >= 1 and at least 2 samples per group "
                         f"(got turns={turns}, episodes={episodes})")
    by_name = {task.name: task for task in tasks}
    records = read_jsonl(data)
    for r in records:
        if "task" not in r["meta"] and len(tasks) == 1:
            r["meta"]["task"] = tasks[0].name  # written before records named their task
        if r["meta"].get("task") not in by_name:
            raise BenchError(f"{data}: a record of task {r['meta'].get('task')!r}; GRPO was given "
                             f"{', '.join(by_name)}")
        by_name[r["meta"]["task"]].experiment(r["meta"]["experiment"])  # BenchError if it has none such
    model, tokenizer = load_model(model_dir)
    group = turns * episodes
    config = GRPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=group,
                        num_generations=group, learning_rate=learning_rate, beta=beta,
                        max_completion_length=max_new_tokens, temperature=temperature, logging_steps=1,
                        save_strategy="no", report_to="none", seed=seed, data_seed=seed, disable_tqdm=True,
                        **_device())
    _train_top(model, train_layers)
    rollouts = EpisodeRollouts(by_name, turns, max_new_tokens, temperature, prompting_of(records))
    trainer = GRPOTrainer(model=model, reward_funcs=oracle_reward, args=config,
                          train_dataset=Dataset.from_dict({"prompt": episode_specs(records)}),
                          processing_class=tokenizer, rollout_func=rollouts)
    trainer.train()
    _save(trainer, tokenizer, out)
    return trainer.state.log_history


def oracle_reward(completions, episode_reward, **_) -> list[float]:
    """The oracle's reward of each trial, computed in the rollout (`lm_rollout.episode_reward`)."""
    return list(episode_reward)


def _train_top(model, layers: int | None) -> None:
    """Freeze all but the top `layers` decoder layers and the final norm (None: train everything).
    On CPU the backward pass then stops `layers` deep: with SmolLM2-135M's 30 layers and 6 trained,
    a step costs about half of full fine-tuning (the forward pass is the rest)."""
    if layers is None:
        return
    decoder = model.get_decoder()
    stack = getattr(decoder, "layers", None)
    if stack is None or not 1 <= layers <= len(stack):
        has = "no `layers` in its decoder" if stack is None else f"{len(stack)} decoder layers"
        raise BenchError(f"--train-layers {layers}: the model has {has}")
    model.requires_grad_(False)
    for block in [*stack[len(stack) - layers:], getattr(decoder, "norm", None)]:
        if block is not None:
            block.requires_grad_(True)


def _device() -> dict:
    """Train on the GPU in bf16 with activation checkpointing when there is one, else on the CPU in
    float32 without it (small models: speed matters more than memory)."""
    import torch

    gpu = torch.cuda.is_available()
    return {"use_cpu": not gpu, "bf16": gpu and torch.cuda.is_bf16_supported(), "gradient_checkpointing": gpu}


def _save(trainer, tokenizer, out: Path) -> None:
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
