"""Method registry: the one place a method name becomes a `MethodSpec` (an Optimizer class plus
its parameters). The harness creates optimizers only through it, never by importing them.

A name is, in this order:
  1. a preset: the built-in ones (`configs/methods.yaml`), then those installed packages
     register (entry points of group `llmconfig_bench.methods`), then a user's presets files
     (`--methods FILE` or `$BENCH_METHODS`, several joined by `os.pathsep`), each merged over the
     ones before (a name given again: the later wins), every one validated alike;
  2. a name a plugin gives (`bench.plugins`, e.g. the agents' `openai:MODEL`);
  3. `module:Class`: an `Optimizer` subclass importable here (installed, on PYTHONPATH, or in the
     working directory), with the parameters `--method-params` gives it (`$BENCH_METHOD_PARAMS`:
     a JSON object {"module:Class": {parameters}}).
Worker processes inherit the environment, so `$BENCH_METHODS` and `$BENCH_METHOD_PARAMS` (set by
`use`) name the same methods there.

An entry point names an `Optimizer` subclass (the method takes the entry point's name, family
`user`, no parameters) or a preset mapping (keys as in methods.yaml: `class`, `family`, `params`,
...). A learned method (a `LearnedOptimizer`) is built from a checkpoint its caller resolves
(`bench.training.checkpoint_for`); nothing here trains.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import inspect
import json
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench import plugins
from bench.errors import BenchError
from bench.gym.problem import Problem
from bench.optimizer import Checkpoint, LearnedOptimizer, Optimizer
from bench.paths import configs_dir

GROUP = "llmconfig_bench.methods"  # entry points: methods an installed package registers
PRESETS_ENV = "BENCH_METHODS"  # a user's presets files (`--methods FILE`)
PARAMS_ENV = "BENCH_METHOD_PARAMS"  # {"module:Class": params} (`--method-params JSON`)
CLASS_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    cls: str = Field(alias="class")  # "module:Class"
    family: str
    description: str = ""
    params: dict[str, Any] = {}
    needs: list[str] = []  # what it needs to run, for `bench methods` (e.g. an API key)
    trains_on: Literal["task", "builtin"] = "task"  # learned: the run's task, or every built-in task
    in_all: bool = True  # included in `--method all`

    def load_class(self) -> type[Optimizer]:
        """The Optimizer class; a BenchError saying what is wrong (no such module or class, not
        an Optimizer, its module fails to import)."""
        return _load_class(self.cls, self.name)

    @property
    def learned(self) -> bool:
        """Is it a `LearnedOptimizer` (trained before its episodes)? False when its class does
        not load (`missing` says why)."""
        try:
            return issubclass(self.load_class(), LearnedOptimizer)
        except BenchError:
            return False

    def missing(self) -> list[str]:
        """What stops this method from running here (empty if it can run)."""
        try:
            cls = self.load_class()
        except BenchError as exc:
            return [str(exc)]
        return cls.unavailable(**self.params)

    def untrainable(self, task) -> str | None:
        """Why this method cannot run on `task` under the task's fixed split: it learns from the
        task's train experiments (`trains_on: task`) and there are none. None when it can."""
        if self.trains_on != "task" or not self.learned or task.split("train"):
            return None
        return (f"learned, it trains on the task's train experiments and {task.name} has none (a spec's "
                "`test:` names its test experiments, the others are train)")

    def check_params(self) -> None:
        """A BenchError naming any preset parameter the class does not take (a misspelled key
        would otherwise fail every episode as a method failure)."""
        signature = inspect.signature(self.load_class().__init__)
        taken = signature.parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in taken.values()):
            return
        unknown = sorted(set(self.params) - set(taken) | set(self.params) & {"self", "problem", "seed"})
        if unknown:
            known = [n for n, p in taken.items() if n not in ("self", "problem", "seed", "checkpoint")
                     and p.kind is not inspect.Parameter.VAR_POSITIONAL]
            raise BenchError(f"method {self.name}: unknown parameter(s) {unknown} for {self.cls}; "
                             f"it takes: {', '.join(known) or 'none'}")

    def make(self, problem: Problem, seed: int, checkpoint: Checkpoint | None = None) -> Optimizer:
        """The optimizer for one episode; a learned method needs its `checkpoint`."""
        if not self.learned:
            return self.load_class()(problem, seed, **self.params)
        if checkpoint is None:
            raise ValueError(f"{self.name} is learned: make() needs its checkpoint "
                             "(bench.training.checkpoint_for)")
        return self.load_class()(problem, seed, checkpoint=checkpoint, **self.params)


@functools.cache
def methods() -> dict[str, MethodSpec]:
    """Every preset by name: built-in, then entry points, then the user's presets files."""
    known = _read_presets(configs_dir() / "methods.yaml")
    known |= _entry_point_presets()
    for path in filter(None, os.environ.get(PRESETS_ENV, "").split(os.pathsep)):
        known |= _read_presets(Path(path))
    return known


def method(name: str) -> MethodSpec:
    """A preset by name, a method a plugin (`bench.plugins`) names, e.g. the agents'
    `openai:MODEL` / `gemini:MODEL` (an LLM agent with default settings), or `module:Class`."""
    known = methods()
    if name in known:
        return known[name]
    body = plugins.method(name)
    if body is not None:
        try:
            return MethodSpec(name=name, **body)
        except (ValidationError, TypeError) as exc:
            raise BenchError(f"method {name!r}: a plugin gave an invalid preset: {exc}") from exc
    if CLASS_REF.fullmatch(name):
        spec = MethodSpec(name=name, cls=name, family="user", params=_class_params().get(name, {}),
                          description=f"{name}, a user's optimizer")
        spec.load_class()
        return spec
    raise BenchError(f"unknown method {name!r}; known: {', '.join([*known, *plugins.method_names()])}, "
                     "or module:Class (an Optimizer importable here)")


def variants(names: Iterable[str]) -> dict[str, str]:
    """Among `names`, each preset that is a variant of another: the same class, its name the
    other's and `-...` (`autollmresearch-no-rl` of `autollmresearch`); the longest such name when
    several are. A name that is no preset (a `module:Class`) is no variant."""
    known = methods()
    names = [n for n in names if n in known]
    out = {}
    for name in names:
        bases = [b for b in names if name.startswith(b + "-") and known[b].cls == known[name].cls]
        if bases:
            out[name] = max(bases, key=len)
    return out


def ranked_apart(names: Iterable[str]) -> set[str]:
    """Among `names`, the presets ranked apart: variants of another preset (`variants` over every
    preset) that `--method all` does not run, such as the policy's ablations. Each is ranked among
    the other methods and itself, never with the other variants, so adding one moves no other
    method's rank. It is a property of the preset, whichever other methods are among `names`."""
    known = methods()
    return {v for v in variants(known) if not known[v].in_all}.intersection(names)


def resolve_methods(arg: str) -> list[str]:
    """`--method` value -> method names: a comma list, or `all` (every runnable preset)."""
    items = [a.strip() for a in arg.split(",") if a.strip()]
    if not items:
        raise BenchError("empty method list; use --method NAME[,NAME...] or all (see `bench methods`)")
    out: list[str] = []
    for item in items:
        if item == "all":
            out += [m for m, s in methods().items() if s.in_all and not s.missing()]
        else:
            missing = method(item).missing()
            if missing:
                raise BenchError(f"method {item} cannot run here: {'; '.join(missing)}")
            out.append(item)
    out = list(dict.fromkeys(out))
    for name in out:
        method(name).check_params()
    return out


def skipped_by_all() -> dict[str, list[str]]:
    """Presets `--method all` leaves out because they cannot run here, with the reasons."""
    return {m: missing for m, s in methods().items() if s.in_all and (missing := s.missing())}


def use(methods_file: str | Path | None = None, method_params: str | Mapping | None = None,
        method_arg: str = "") -> None:
    """Apply `--methods FILE` (a user's presets, merged over the built-in ones; replaces
    `$BENCH_METHODS`) and `--method-params JSON` (the parameters of the one `module:Class` method
    in `method_arg`, the `--method` value) here and in the worker processes started from here,
    through the environment they inherit. Both are checked now: one BenchError before anything
    runs."""
    if methods_file is not None:
        path = Path(methods_file).expanduser().resolve()
        if not path.is_file():
            raise BenchError(f"--methods {methods_file}: no such file (a YAML of method presets)")
        os.environ[PRESETS_ENV] = str(path)
        methods.cache_clear()
        methods()
    if method_params is None:
        return
    params = method_params
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise BenchError(f"--method-params is not valid JSON ({exc}): {method_params}") from None
    if not isinstance(params, Mapping):
        raise BenchError(f"--method-params must be a JSON object of parameters, e.g. '{{\"top_k\": 3}}' "
                         f"(got {method_params})")
    refs = [m for m in (a.strip() for a in method_arg.split(",")) if CLASS_REF.fullmatch(m)
            and m not in methods() and plugins.method(m) is None]
    if len(refs) != 1:
        raise BenchError(f"--method-params gives the parameters of one module:Class method in --method "
                         f"(found {', '.join(refs) or 'none'}); name several, or a preset's variants, in "
                         "a presets file (--methods FILE)")
    os.environ[PARAMS_ENV] = json.dumps({refs[0]: dict(params)})


@contextlib.contextmanager
def using(methods_file: str | Path | None = None, method_params: str | Mapping | None = None,
          method_arg: str = "") -> Iterator[None]:
    """`use` for the duration of a `with` block (the Python API): the environment and the
    presets are restored after it."""
    saved = {k: os.environ.get(k) for k in (PRESETS_ENV, PARAMS_ENV)}
    try:
        use(methods_file, method_params, method_arg)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        methods.cache_clear()


def _read_presets(path: Path) -> dict[str, MethodSpec]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"method presets {path} are unreadable: {exc}") from exc
    if not isinstance(raw, dict) or not all(isinstance(b, dict) for b in raw.values()):
        raise BenchError(f"method presets {path}: expected a mapping of name -> preset (class, family, "
                         "params, ...), as in configs/methods.yaml")
    return {str(name): _preset(str(name), body, f"method presets {path}") for name, body in raw.items()}


def _preset(name: str, body: Mapping, where: str) -> MethodSpec:
    try:
        return MethodSpec(name=name, **body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'preset'}: {e['msg']}" for e in exc.errors())
        raise BenchError(f"{where}: {name}: {problems}") from None


def _entry_point_presets() -> dict[str, MethodSpec]:
    """The methods installed packages register, in entry point name order. One that fails to
    load is listed with its class string, so `missing()` (and `bench methods`) says why."""
    found = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        where = f"method {ep.name} = {ep.value!r} (entry point group {GROUP})"
        try:
            obj = ep.load()
        except Exception:
            found[ep.name] = MethodSpec(name=ep.name, cls=ep.value, family="user")
            continue
        if isinstance(obj, Mapping):
            found[ep.name] = _preset(ep.name, obj, where)
        elif isinstance(obj, type) and issubclass(obj, Optimizer):
            doc = (obj.__dict__.get("__doc__") or "").strip().splitlines()
            found[ep.name] = MethodSpec(name=ep.name, cls=ep.value, family="user",
                                        description=doc[0] if doc else "")
        else:
            raise BenchError(f"{where}: names neither an Optimizer subclass nor a preset mapping")
    return found


def _class_params() -> dict[str, dict]:
    raw = os.environ.get(PARAMS_ENV)
    if not raw:
        return {}
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BenchError(f"${PARAMS_ENV} is not valid JSON ({exc})") from None
    if not isinstance(params, dict) or not all(isinstance(p, dict) for p in params.values()):
        raise BenchError(f"${PARAMS_ENV} must be a JSON object {{\"module:Class\": {{parameters}}}}")
    return params


def _load_class(ref: str, name: str) -> type[Optimizer]:
    module, _, attr = ref.partition(":")
    try:
        loaded = _import(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise BenchError(f"method {name}: no module named {exc.name!r} (class {ref}); it must be "
                             "importable here: installed, on PYTHONPATH or in the working directory"
                             ) from None
        raise BenchError(f"method {name}: importing {module} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise BenchError(f"method {name}: importing {module} failed: {type(exc).__name__}: {exc}") from None
    cls = loaded
    for part in attr.split("."):
        cls = getattr(cls, part, None)
    if cls is None:
        classes = [n for n, v in vars(loaded).items()
                   if isinstance(v, type) and issubclass(v, Optimizer) and not inspect.isabstract(v)]
        close = difflib.get_close_matches(attr, classes, n=1)
        hint = f"; did you mean {module}:{close[0]}?" if close else \
            f"; its Optimizer classes: {', '.join(classes) or 'none'}"
        raise BenchError(f"method {name}: module {module} has no {attr!r}{hint}")
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise BenchError(f"method {name}: {ref} is not an Optimizer subclass (bench.optimizer.Optimizer)")
    return cls


_PLACED: set[tuple] = set()  # (package, working directory, PYTHONPATH, sys.path) checked by `_import`


def _import(module: str):
    """Import `module` from sys.path, else from the working directory (as `python -m` does; the
    `bench` script's own path lacks it). A module found on a path entry that worker processes
    (`python -m bench.workers`: same working directory and environment) would lack, such as a
    script's folder, goes onto PYTHONPATH, which they inherit."""
    top = module.partition(".")[0]
    if _placement(top) in _PLACED and module in sys.modules:  # imported and placed already, nothing changed
        return sys.modules[module]
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        loaded = importlib.import_module(module)
    spec = sys.modules[top].__spec__
    folder = Path(spec.origin).parent if spec and spec.origin and spec.has_location else None
    if folder is not None and spec.submodule_search_locations is not None:
        folder = folder.parent
    searched = {os.path.abspath(p) for p in sys.path}
    if folder is not None and str(folder) in searched:
        pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        inherited = {os.getcwd(), *map(os.path.abspath, pythonpath), *site.getsitepackages(),
                     site.getusersitepackages(), *sysconfig.get_paths().values()}
        if str(folder) not in inherited:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *pythonpath])
    _PLACED.add(_placement(top))
    return loaded


def _placement(top: str) -> tuple:
    """What `_import`'s placement of package `top` depends on."""
    return top, os.getcwd(), os.environ.get("PYTHONPATH", ""), tuple(sys.path)
