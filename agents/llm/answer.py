"""What an LLM agent may answer: a JSON schema built from the search space, and a parser that
accepts what models really write (code fences, prose around the object, numbers as strings).

Two forms:
  by id      {"reasoning": str, "candidate": int}                 the target pool is listed; the schema
                                                                  enumerates the ids it may name
  by config  {"reasoning": str, "config": {param: value, ...}}    snapped to the nearest candidate
Cost budgets add "fidelity" (one of the fidelities the budget still affords) to either form.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    Constant,
    OrdinalHyperparameter,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)

from bench.gym.space import choices


class AnswerError(ValueError):
    """The answer cannot be used; the message is shown to the model when it is asked again."""


@dataclass(frozen=True)
class Form:
    """The answer expected for one trial."""

    space: ConfigurationSpace
    by_id: bool
    ids: frozenset[int] = frozenset()  # by id: the ids it may name (the untried candidates)
    fidelities: tuple[str, ...] = ()  # cost budgets: the fidelities it may choose; () = the target
    reasoning_chars: int | None = None  # the schema's maxLength of the reasoning (small models)

    def schema(self) -> dict:
        props: dict[str, Any] = {"reasoning": {"type": "string"}}
        if self.reasoning_chars is not None:
            props["reasoning"]["maxLength"] = self.reasoning_chars
        if self.fidelities:
            props["fidelity"] = {"type": "string", "enum": list(self.fidelities)}
        if self.by_id:
            props["candidate"] = {"type": "integer", "enum": sorted(self.ids)}
        else:
            params = {name: _param_schema(hp) for name, hp in self.space.items()}
            props["config"] = {"type": "object", "properties": params, "required": list(params),
                               "additionalProperties": False}
        return {"type": "object", "properties": props, "required": list(props),
                "additionalProperties": False}

    def parse(self, text: str) -> Answer:
        """The answer in `text`, validated; `AnswerError` says what is wrong."""
        obj = extract_json(text)
        fidelity = None
        if self.fidelities:
            fidelity = obj.get("fidelity")
            if fidelity not in self.fidelities:
                raise AnswerError(f"fidelity must be one of {list(self.fidelities)} (got {fidelity!r})")
        reasoning = str(obj.get("reasoning", "")).strip()
        if self.by_id:
            cid = _integer(obj.get("candidate"), "candidate")
            if cid not in self.ids:
                raise AnswerError(f"candidate {cid} is not one of the listed untried candidate ids")
            return Answer(reasoning, candidate=cid, fidelity=fidelity)
        config = obj.get("config")
        if not isinstance(config, dict):
            raise AnswerError('the answer needs a "config" object with a value for every parameter')
        return Answer(reasoning, config=self.check_config(config), fidelity=fidelity)

    def check_config(self, config: dict) -> dict[str, Any]:
        missing = [n for n in self.space if n not in config]
        unknown = [n for n in config if n not in self.space]
        if missing or unknown:
            raise AnswerError(f"config must set exactly the parameters {list(self.space)}"
                              + (f"; missing {missing}" if missing else "")
                              + (f"; unknown {unknown}" if unknown else ""))
        return {name: _value(hp, config[name]) for name, hp in self.space.items()}


@dataclass(frozen=True)
class Answer:
    reasoning: str
    candidate: int | None = None
    config: dict[str, Any] | None = None
    fidelity: str | None = None


def extract_json(text: str) -> dict:
    """The answer object in a reply: the last top-level JSON object in it, whether the reply is
    bare JSON, a fenced block, or prose around it (the answer usually follows thinking aloud)."""
    text, found, i = text or "", None, 0
    decoder = json.JSONDecoder()
    while (i := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        found, i = (obj if isinstance(obj, dict) else found), end
    if found is None:
        raise AnswerError("no JSON object found; reply with one JSON object following the schema")
    return found


def _param_schema(hp) -> dict:
    if isinstance(hp, UniformFloatHyperparameter):
        return {"type": "number"}
    if isinstance(hp, UniformIntegerHyperparameter):
        return {"type": "integer"}
    if isinstance(hp, Constant):
        return {"enum": [hp.value]}
    return {"enum": choices(hp)}


def _integer(v, what: str) -> int:
    if isinstance(v, bool):
        raise AnswerError(f"{what} must be an integer (got {v!r})")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise AnswerError(f"{what} must be an integer (got {v!r})") from None
    if not math.isfinite(f) or f != int(f):
        raise AnswerError(f"{what} must be an integer (got {v!r})")
    return int(f)


def _value(hp, v):
    """`v` as a value of `hp`, or `AnswerError` naming the parameter and its range."""
    name = hp.name
    if isinstance(hp, UniformFloatHyperparameter | UniformIntegerHyperparameter):
        is_int = isinstance(hp, UniformIntegerHyperparameter)
        x = _integer(v, name) if is_int else _number(v, name)
        tolerance = 1e-9 * max(abs(hp.lower), abs(hp.upper), 1.0)
        if not hp.lower - tolerance <= x <= hp.upper + tolerance:
            raise AnswerError(f"{name}={v!r} is outside [{hp.lower:g}, {hp.upper:g}]")
        return x if is_int else min(max(x, hp.lower), hp.upper)
    options = [hp.value] if isinstance(hp, Constant) else choices(hp)
    for option in options:  # models often quote numbers or write booleans as strings
        if v == option or str(v).strip().lower() == str(option).lower():
            return option
    if not isinstance(hp, CategoricalHyperparameter | OrdinalHyperparameter | Constant):
        raise AnswerError(f"{name}: unsupported parameter type {type(hp).__name__}")
    raise AnswerError(f"{name}={v!r} is not one of {options}")


def _number(v, name: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise AnswerError(f"{name} must be a number (got {v!r})") from None
    if not math.isfinite(x) or isinstance(v, bool):
        raise AnswerError(f"{name} must be a finite number (got {v!r})")
    return x
