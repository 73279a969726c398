"""Trajectories as chat records in the LLM agents' own prompt format, for SFT and GRPO of a causal LM.

`ChatPolicy` is the LLM agent's protocol with the model replaced by a function of the messages:
each trial it renders exactly the system and user messages `LLMAgent` would send
(`agents.llm.agent.next_trial`) and parses the reply with the agent's `Form`. Replaying a
trajectory through it (`chat_records`) turns every step into one record

    {"messages": [system, user, assistant],
     "meta": {"task", "experiment", "prior", "budget", "seed", "step", "prompting"}}

whose assistant message is the answer the agent's form expects for the step's candidate: by id
when the pool is listed, else the candidate's configuration. `meta` rebuilds the episode
(`task.problem(experiment, Budget("trials", budget), Prior(*prior), seed)`) for rewards, and
`prompting` is the prompt's fit to the model (`agents.llm.prompt.Prompting`, a preset's: records for
a small model use its compact prompts), which GRPO's episodes ask with too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from agents.llm.agent import next_trial
from agents.llm.answer import AnswerError, Form
from agents.llm.prompt import SYSTEM, PriorDigest, Prompting
from agents.policy.trajectories import Trajectory
from bench.errors import BenchError
from bench.gym.problem import Budget, Outcome, Problem, Query
from bench.gym.task import Prior, Task
from bench.loop import Trace, run
from bench.optimizer import Optimizer

Messages = list[dict[str, str]]


class ChatPolicy(Optimizer):
    """On trial budgets, the LLM agent's prompt and answer protocol around
    `respond(messages, form) -> reply text`.

    An unusable reply is not asked again: a uniformly drawn untried candidate is run instead, as
    the agent's fallback, and `valid` records which replies were usable. Every exchange is kept
    in `transcript` as [system, user, assistant] messages. Without `respond`, drive it with
    `prompt` and `answer` (batched generation over several episodes)."""

    def __init__(self, problem: Problem, seed: int, respond: Callable[[Messages, Form], str] | None = None,
                 prompting: Prompting | None = None):
        super().__init__(problem, seed)
        self.respond, self.prompting = respond, prompting or Prompting()
        self.prior = PriorDigest(problem)
        self.transcript: list[Messages] = []
        self.valid: list[bool] = []

    def ask(self) -> Query:
        messages, form = self.prompt()
        return self.answer(messages, form, self.respond(messages, form))

    def prompt(self) -> tuple[Messages, Form]:
        """The [system, user] messages of the next trial and the form its answer must take."""
        form, prompt = next_trial(self, self.prior, self.prompting)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}], form

    def answer(self, messages: Messages, form: Form, reply: str) -> Query:
        """The query of `reply` to `messages` (the fallback's when unusable)."""
        self.transcript.append([*messages, {"role": "assistant", "content": reply}])
        try:
            answer = form.parse(reply)
        except AnswerError as exc:
            self.valid.append(False)
            return Query(self.random_candidate(), self.problem.target, info={"fallback": str(exc)})
        self.valid.append(True)
        info = {"rationale": answer.reasoning}
        if answer.candidate is not None:
            query = self.query_candidate(answer.candidate)
            return Query(query.config, query.fidelity, query.candidate, info=info)
        return Query(answer.config, answer.fidelity or self.problem.target, info=info)


def episode_problem(task: Task, meta: dict) -> Problem:
    """The episode a record's (or a trajectory's) metadata names."""
    return task.problem(meta["experiment"], Budget("trials", meta["budget"]), Prior(*meta["prior"]),
                        meta["seed"])


def answer_text(problem: Problem, form: Form, candidate: int, rationale: str) -> str:
    """The JSON answer `form` expects for target candidate id `candidate` (the rationale cut to the
    form's length)."""
    rationale = rationale[:form.reasoning_chars]
    if form.by_id:
        return json.dumps({"reasoning": rationale, "candidate": int(candidate)})
    return json.dumps({"reasoning": rationale, "config": dict(problem.arrays().records[candidate])})


def chat_records(task: Task, trajectories: Iterable[Trajectory], prompting: Prompting | None = None
                 ) -> Iterator[dict]:
    """One record per step of each trajectory, replayed through the episode's oracle."""
    for trajectory in trajectories:
        yield from _replayed(task, trajectory, prompting or Prompting())


def prompting_of(records: list[dict]) -> Prompting:
    """The one prompting of chat records (default for records written before it was recorded)."""
    found = {json.dumps(r["meta"].get("prompting"), sort_keys=True) for r in records}
    if len(found) != 1:
        raise BenchError(f"the chat records mix {len(found)} promptings; export one per file")
    recorded = records[0]["meta"].get("prompting")
    return Prompting(**recorded) if recorded else Prompting()


def _replayed(task: Task, trajectory: Trajectory, prompting: Prompting) -> list[dict]:
    """The records of one trajectory: the harness's loop (`bench.loop`) runs the chat policy
    answering its steps; a step the episode does not run as recorded is a BenchError."""
    meta = {"task": task.name, "experiment": trajectory.experiment, "budget": trajectory.budget,
            "seed": trajectory.seed,
            "prior": [trajectory.prior.kind, trajectory.prior.gap, trajectory.prior.budget],
            "prompting": asdict(prompting)}
    problem = episode_problem(task, meta)
    policy = ChatPolicy(problem, trajectory.seed, _replay(problem, trajectory), prompting)
    records = []

    def check(trace: Trace, _query: Query, outcome: Outcome, _seconds: float) -> None:
        t = trace.trials - 1
        step = trajectory.steps[t]
        same = outcome.candidate == step.candidate and math.isclose(outcome.value, step.value,
                                                                    rel_tol=1e-9, abs_tol=1e-12)
        if not (policy.valid[-1] and same):
            raise BenchError(f"trajectory {trajectory.experiment} seed {trajectory.seed} does not replay "
                             f"on task {task.name} at step {t}: it asked candidate {step.candidate} "
                             f"(value {step.value:.6g}), the episode ran {outcome.candidate} "
                             f"(value {outcome.value:.6g})")
        records.append({"messages": policy.transcript[-1], "meta": {**meta, "step": t}})

    run(policy, task.oracle(trajectory.experiment, trajectory.seed), problem, "replay", check)
    return records


def _replay(problem: Problem, trajectory: Trajectory) -> Callable[[Messages, Form], str]:
    """A `respond` that answers the trajectory's steps in order."""
    steps = iter(trajectory.steps)

    def respond(_: Messages, form: Form) -> str:
        step = next(steps)
        return answer_text(problem, form, step.candidate, step.rationale)

    return respond


def write_jsonl(records: Iterable[dict], path: Path) -> int:
    """Write one JSON object per line; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    """The chat records in `path`, checked: each line an object with [system, user, assistant]
    messages and the episode metadata."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"chat JSONL {path} does not exist; write it with `bench lm export`")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(_checked(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"{path}:{n}: not a chat record of `bench lm export` ({exc})") from None
    if not records:
        raise BenchError(f"chat JSONL {path} holds no records")
    return records


def _checked(record: dict) -> dict:
    roles = [m["role"] for m in record["messages"]]
    if roles != ["system", "user", "assistant"]:
        raise ValueError(f"messages must be system, user, assistant (got {roles})")
    if not all(isinstance(m["content"], str) for m in record["messages"]):
        raise ValueError("message contents must be text")
    missing = {"experiment", "prior", "budget", "seed", "step"} - set(record["meta"])
    if missing:
        raise ValueError(f"meta lacks {sorted(missing)}")
    return record


def read_trajectories(path: Path) -> list[Trajectory]:
    """Trajectories from a JSON file holding a list of `Trajectory.to_dict()`."""
    path = Path(path)
    try:
        return [Trajectory.from_dict(d) for d in json.loads(path.read_text())]
    except FileNotFoundError:
        raise BenchError(f"trajectories file {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"{path}: not a JSON list of trajectories ({type(exc).__name__}: {exc})") from None


def export(task: Task, trajectories: Iterable[Trajectory], path: Path,
           prompting: Prompting | None = None) -> int:
    """Write the chat records of `trajectories` (played on `task`, prompted as `prompting` says) to
    JSONL; returns how many."""
    return write_jsonl(chat_records(task, trajectories, prompting), path)
