"""Import layers: the harness (`bench`) imports no method, and no method imports another's module,
so that a method can be removed, replaced or installed apart without breaking the others. Shared
models of the prior live in `bench` (e.g. `bench.extrapolation`); a method uses another only
through the registry (`bench.methods`)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported(path: Path) -> set[str]:
    """The top two dotted parts of every module `path` imports (`baselines.nap`, `bench.gym`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {".".join(n.split(".")[:2]) for n in names}


METHODS = ("baselines", "agents")


def owner(name: str) -> str:
    """The method a dotted module name belongs to: `baselines.<module or package>`, or `agents`
    (the LLM agents and the policy, one package)."""
    return "agents" if name.startswith("agents") else ".".join(name.split(".")[:2])


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("bench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_harness_imports_no_method(path):
    assert not {n for n in imported(path) if n.split(".")[0] in METHODS}


@pytest.mark.parametrize("path", modules("baselines") + modules("agents"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_a_method_imports_no_other_method(path):
    mine = owner(".".join(path.relative_to(ROOT).with_suffix("").parts))
    others = {n for n in imported(path) if n.split(".")[0] in METHODS and owner(n) != mine}
    assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"


def test_the_check_sees_a_cross_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from baselines.extrapolate import Extrapolate\nimport numpy\n")
    assert imported(module) == {"baselines.extrapolate", "numpy"}
