"""Whole-episode rollouts for TRL's `GRPOTrainer` (its `rollout_func`): multi-turn GRPO in the
served agent's own protocol, rewarded by the benchmark's oracle.

Each dataset prompt is an episode spec (the JSON of a chat record's `meta`: task, experiment,
prior, seed). TRL hands every spec over `num_generations` times in a row; for each such group the
rollout plays `num_generations // turns` whole episodes of `turns` target trials in lockstep with
the model being trained. Every trial is asked exactly as the served agent asks it: a fresh
[system, user] conversation whose user message holds the whole history so far (`ChatPolicy`), so
a trial is one sample (its prompt ids, the sampled completion ids and their log-probabilities),
and an episode is `turns` samples. Rewards come from the oracle (`episode_reward`): every trial of
an episode gets -pregret of the episode's final best target value (the score the leaderboard
reports, bounded, so a heavy-tailed pool cannot let one bad pick swamp the group), except a trial
whose answer the agent's `Form` rejects, which gets the worst reward, -pregret of the worst target
candidate (the trial itself runs the agent's fallback, a random untried candidate); an episode with no target
value scores as the worst candidate (the harness's failure rule). pregret is the experiment's
`Scorer`'s (`bench.scores`), always finite. The group's samples share TRL's group-relative
advantage: whole-episode GRPO with each trial credited with its episode's return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agents.llm.prompt import Prompting
from agents.policy.chat import ChatPolicy, episode_problem
from bench.gym.problem import Problem
from bench.gym.task import Oracle, Task


def score(problem: Problem, oracle: Oracle, value: float) -> float:
    """-pregret of a target value (`Oracle.scorer`)."""
    return -float(oracle.scorer.pregret(value))


def episode_reward(problem: Problem, oracle: Oracle, policy: ChatPolicy) -> list[float]:
    """The reward of each trial `policy` played (see the module docstring)."""
    values = [o.value for _, o in policy.history if o.fidelity == problem.target]
    best = problem.objective.best(values) if values else oracle.scorer.worst
    worst = score(problem, oracle, oracle.scorer.worst)
    return [score(problem, oracle, best) if ok else worst for ok in policy.valid]


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The token ids of `messages` in the model's chat template, up to the assistant's turn."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]


@dataclass
class EpisodeRollouts:
    """`rollout_func(prompts, trainer)`: plays the episodes of each group of identical specs."""

    tasks: dict[str, Task]  # by name: the tasks of the episode specs
    turns: int
    max_new_tokens: int = 256
    temperature: float = 1.0
    prompting: Prompting = field(default_factory=Prompting)  # as the served preset prompts

    def __call__(self, prompts: list[str], trainer) -> dict[str, list]:
        group = trainer.num_generations
        if group % self.turns:
            raise ValueError(f"num_generations {group} must be a multiple of the turns per episode "
                             f"{self.turns}")
        from trl.models import unwrap_model_for_generation

        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "episode_reward": []}
        # TRL's own context for generating with the trained model (no activation checkpointing: KV cache)
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
                                         ) as model:
            for start in range(0, len(prompts), group):
                specs = set(prompts[start:start + group])
                if len(specs) != 1:
                    raise ValueError(f"expected {group} copies of one episode spec in a row, got "
                                     f"{len(specs)} specs")
                for sample in self.play(json.loads(specs.pop()), group // self.turns, model,
                                        trainer.processing_class):
                    for key, value in sample.items():
                        out[key].append(value)
        return out

    def play(self, spec: dict, episodes: int, model, tokenizer) -> list[dict]:
        """`episodes` episodes of `spec` played in lockstep, one sample per trial, episode by episode."""
        task = self.tasks[spec["task"]]
        problem = episode_problem(task, {**spec, "budget": self.turns})
        oracle = task.oracle(spec["experiment"], spec["seed"])
        policies = [ChatPolicy(problem, spec["seed"] + i, prompting=self.prompting) for i in range(episodes)]
        samples: list[list[dict]] = [[] for _ in policies]
        for _ in range(self.turns):
            asked = [policy.prompt() for policy in policies]
            prompt_ids = [chat_ids(tokenizer, messages) for messages, _ in asked]
            for i, (completion, logprobs) in enumerate(self.sample(model, tokenizer, prompt_ids)):
                reply = tokenizer.decode(completion, skip_special_tokens=True)
                query = policies[i].answer(*asked[i], reply)
                policies[i].tell(query, oracle.evaluate(query))
                samples[i].append({"prompt_ids": prompt_ids[i], "completion_ids": completion,
                                   "logprobs": logprobs})
        for policy, trials in zip(policies, samples, strict=True):
            for sample, reward in zip(trials, episode_reward(problem, oracle, policy), strict=True):
                sample["episode_reward"] = reward
        return [sample for trials in samples for sample in trials]

    def sample(self, model, tokenizer, prompt_ids: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        """One sampled completion per prompt (up to and including the end-of-turn token) with the
        log-probability of each token under the sampling distribution (softmax of logits / T)."""
        import torch

        batch = tokenizer.pad({"input_ids": prompt_ids}, padding_side="left", return_tensors="pt")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with torch.no_grad():
            out = model.generate(**batch, do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=self.max_new_tokens, return_dict_in_generate=True,
                                 output_scores=True, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        tokens = out.sequences[:, batch["input_ids"].shape[1]:]
        logprobs = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1)
        picked = logprobs.gather(-1, tokens[..., None])[..., 0]
        result = []
        for row, lp in zip(tokens.tolist(), picked.tolist(), strict=True):
            end = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
            result.append((row[:end], lp[:end]))
        return result
