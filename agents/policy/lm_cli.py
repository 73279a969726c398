"""`bench lm`: the LLM backend of the AutoLLMResearch pipeline (export, tiny, sft, grpo, serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True,
                  help="LLM backend: trajectories as chat JSONL, SFT and multi-turn GRPO with TRL, serving.")

Task = Annotated[str, typer.Option("--task", help="Task name or spec .yaml (its train experiments only).")]
Data = Annotated[Path, typer.Option("--data", help="Chat JSONL written by `bench lm export`.")]
Model = Annotated[Path, typer.Option("--model", help="Model to start from: a directory (save_pretrained), a "
                                                    ".gguf file, or smollm2-135m (fetched on first use).")]
Out = Annotated[Path, typer.Option("--out", help="Where to write the result.")]
Seed = Annotated[int, typer.Option("--seed")]
TrainLayers = Annotated[int | None, typer.Option(
    "--train-layers", help="Train only the top N decoder layers and the final norm (CPU budgets); "
                           "default: all.")]


def _train_task(name: str):
    from bench.gym.registry import load_task
    from bench.training import train_only

    return train_only(load_task(name))


def _report(history: list[dict], key: str) -> None:
    values = [h[key] for h in history if key in h]
    if values:
        typer.echo(f"{key}: first {values[0]:.4g}, last {values[-1]:.4g} over {len(values)} steps")


@app.command()
def export(task: Task, trajectories: Annotated[Path | None, typer.Option(
        "--trajectories", help="JSON list of Trajectory.to_dict() on the task's train experiments; default: "
                               "the policy's stage-2 trajectories (curated, simulated, cached).")] = None,
        out: Out = Path("chat.jsonl"), seed: Seed = 0,
        prompting: Annotated[str | None, typer.Option(
            "--prompting", help="An LLM preset whose prompt sizes to use (smollm2-135m: compact prompts for "
                                "its 8k context); default: the large models'.")] = None) -> None:
    """Write every step of the trajectories as a chat record in the LLM agents' prompt format."""
    from agents.llm.prompt import Prompting
    from agents.policy.chat import export as write
    from agents.policy.chat import read_trajectories
    from bench.methods import method

    fit = Prompting.of(method(prompting).params) if prompting else None
    if trajectories is None:
        from agents.policy.policy import simulated
        from bench.gym.registry import load_task

        curated, found = simulated(load_task(task), seed)
        n = write(curated, found, out, fit)
    else:
        n = write(_train_task(task), read_trajectories(trajectories), out, fit)
    typer.echo(f"wrote {n} chat records to {out}")


@app.command()
def tiny(data: Data, out: Out = Path("tiny-lm"), seed: Seed = 0) -> None:
    """A tiny randomly initialised causal LM, its tokenizer trained on the chat JSONL (no download)."""
    from agents.policy.chat import read_jsonl
    from agents.policy.lm_model import chat_texts, tiny_model

    typer.echo(f"wrote {tiny_model(chat_texts(read_jsonl(data)), out, seed)}")


@app.command()
def sft(data: Data, model: Model, out: Out = Path("lm-sft"),
        steps: Annotated[int, typer.Option("--steps")] = 200,
        batch_size: Annotated[int, typer.Option("--batch-size")] = 4,
        lr: Annotated[float, typer.Option("--lr")] = 1e-4,
        max_length: Annotated[int, typer.Option("--max-length", help="Tokens per record (cut on the left).")
                              ] = 8192,
        train_layers: TrainLayers = None, seed: Seed = 0) -> None:
    """Distil the trajectories into the model: SFT on the assistant answers (TRL SFTTrainer)."""
    from agents.policy.lm import sft as train

    _report(train(data, model, out, steps=steps, batch_size=batch_size, learning_rate=lr,
                  max_length=max_length, train_layers=train_layers, seed=seed), "loss")
    typer.echo(f"wrote {out}")


@app.command()
def grpo(task: Annotated[str, typer.Option("--task", help="Task name(s), comma-separated: the tasks of the "
                                                           "records (their train experiments only; the "
                                                           "curation of `bench lm export --seed`, the "
                                                           "same --seed).")],
         data: Data, model: Model, out: Out = Path("lm-grpo"),
         turns: Annotated[int, typer.Option("--turns", help="Target trials per episode.")] = 3,
         episodes: Annotated[int, typer.Option("--episodes", help="Episodes per GRPO group.")] = 4,
         steps: Annotated[int, typer.Option("--steps")] = 100,
         lr: Annotated[float, typer.Option("--lr")] = 1e-6,
         max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 256,
         temperature: Annotated[float, typer.Option("--temperature")] = 1.0,
         train_layers: TrainLayers = None, seed: Seed = 0) -> None:
    """Multi-turn GRPO from the SFT model on whole episodes, rewarded by the oracle (TRL GRPOTrainer)."""
    from agents.policy.lm import grpo as train
    from agents.policy.policy import curated_task
    from bench.gym.registry import load_task

    # the curated tasks `bench lm export` plays: their train experiments, variants and truncations
    tasks = [curated_task(load_task(name.strip()), seed) for name in task.split(",")]
    _report(train(tasks, data, model, out, turns=turns, episodes=episodes, steps=steps, learning_rate=lr,
                  max_new_tokens=max_new_tokens, temperature=temperature, train_layers=train_layers,
                  seed=seed), "reward")
    typer.echo(f"wrote {out}")


@app.command()
def serve(model: Annotated[Path, typer.Argument(help="Model directory, .gguf file, or a local model's "
                                                    "name (smollm2-135m: fetched on first use).")],
          name: Annotated[str | None, typer.Option("--name", help="Served model name (default: the "
                                                                  "directory's or file's name).")] = None,
          host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port")] = 8000,
          max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512) -> None:
    """Serve a model directory or GGUF file over the OpenAI Chat Completions API, with JSON-schema
    constrained decoding (a CPU server: use vLLM for real)."""
    from agents.llm.local import MODELS
    from agents.policy.lm_serve import ChatServer

    if str(model) in MODELS:
        name = name or str(model)
    server = ChatServer(model, name, host, port, max_new_tokens)
    typer.echo(f"serving {server.name} at {server.base_url}; run: OPENAI_BASE_URL={server.base_url} "
               f"bench run --method openai:{server.name} ...")
    try:
        server.serve_forever()
    finally:
        server.close()
