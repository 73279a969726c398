"""The package layout: `bench/` (the harness) imports nothing from `agents/` or `baselines/` (they
plug in through preset class strings and `bench.plugins`), bench's modules import one another
without a cycle, and no method imports another method's module (a method can be removed or
replaced without breaking the others; what two share lives in bench, e.g. `bench.extrapolation`).
Static: every module is parsed, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
METHODS = ("agents", "baselines")


def _modules(package: Path = BENCH) -> dict[str, Path]:
    """Every module under `package` by dotted name (a package by its own name, for its __init__)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(BENCH.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) of every import in the file, function-local and
    conditional ones included; a relative import resolved against `name`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            out += [(node.lineno, module, a.name) for a in node.names]
    return out


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Edge A -> B when A imports B, or something from B. `from bench.gym import rules` imports
    the module bench.gym.rules when there is one (else a name of bench.gym's __init__).

    Implicit edges to parent packages are left out: `import bench.gym.task` runs bench/gym/__init__
    first, but a package whose __init__ imports its own submodules would then be a "cycle" with each
    of them, a pattern Python handles (the package is in sys.modules before its __init__ runs). An
    explicit import from a package's __init__ (`from bench.data import SOURCES`) is an edge to it."""

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for _, module, imported in _imports(name, path):
            if module.split(".")[0] != "bench":
                continue
            target = f"{module}.{imported}" if f"{module}.{imported}" in modules else owner(module)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_bench_imports_nothing_from_agents_or_baselines():
    bad = [f"{path.relative_to(BENCH.parent)}:{line}: {module}" + (f" ({imported})" if imported else "")
           for name, path in _modules().items() for line, module, imported in _imports(name, path)
           if module.split(".")[0] in METHODS]
    assert not bad, "bench/ must not import agents/ or baselines/ (use bench.plugins):\n" + "\n".join(bad)


def _method(module: str) -> str:
    """The method a module belongs to: `baselines.<module or package>`, or `agents` (the LLM
    agents and the policy, one package)."""
    return "agents" if module.split(".")[0] == "agents" else ".".join(module.split(".")[:2])


def test_no_method_imports_another_method():
    modules = {**_modules(ROOT / "baselines"), **_modules(ROOT / "agents")}
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for name, path in modules.items() for line, module, _ in _imports(name, path)
           if module.split(".")[0] in METHODS and _method(module) != _method(name)]
    assert not bad, "a method imports another method's module (share it through bench/):\n" + "\n".join(bad)


def test_no_import_cycle_among_bench_modules():
    cycles = _cycles(_graph(_modules()))
    assert not cycles, "import cycles among bench's modules (function-local imports included):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_what_they_should():
    """The checks themselves: a known edge, a resolved submodule import, a planted cycle."""
    modules = _modules()
    graph = _graph(modules)
    assert "bench.errors" in graph["bench.cli"] and "bench.plugins" in graph["bench.methods"]
    assert "bench.gym.env" in graph["bench.gym"]  # `from bench.gym import env`, inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _method("baselines.optformer.model") == _method("baselines.optformer") != _method("baselines.nap")
    assert _method("agents.policy.chat") == _method("agents.llm.prompt")
