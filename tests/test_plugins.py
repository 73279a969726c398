"""Extensions through `bench.plugins`: the agents' plugin (`bench lm`, `openai:MODEL`, `--llm-cache`)
and a plugin of another distribution, found through its entry point like any installed one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.methods import method

BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import typer

class Plugin:
    method_names = "toy:NAME"

    def commands(self, app):
        @app.command("toy")
        def toy(word: str = typer.Option("hi", "--word")) -> None:
            """A command a plugin adds."""
            print(f"toy says {word}")

    def method(self, name):
        if name.startswith("toy:"):
            return {"class": "baselines.random_search:RandomSearch", "family": "baseline",
                    "description": "uniform draws, named by a plugin", "in_all": False}
        return None

plugin = Plugin()
'''


def _install(where: Path, entry: str, module: str | None = None) -> dict[str, str]:
    """A distribution on `where` (metadata + module) declaring `entry` in the plugin group; the
    environment that puts it on the path."""
    info = where / "toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[llmconfig_bench.plugins]\n{entry}\n")
    if module is not None:
        (where / "toy_plugin.py").write_text(textwrap.dedent(module))
    path = os.pathsep.join([str(where), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _bench(*args, env=None):
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=300, env=env)


def test_agents_plugin_names_llm_methods():
    spec = method("openai:gpt-4o")
    assert (spec.cls, spec.family, spec.in_all) == ("agents.llm.agent:LLMAgent", "llm", False)
    assert spec.params == {"provider": "openai", "model": "gpt-4o"}
    assert method("gemini:x:y").params == {"provider": "gemini", "model": "x:y"}
    with pytest.raises(BenchError, match=r"method 'nope'; known: random, .*, openai:MODEL, gemini:MODEL"):
        method("nope")
    with pytest.raises(BenchError, match="unknown method 'openai:'"):
        method("openai:")


def test_lm_commands_and_llm_cache_through_the_plugin(tmp_path):
    r = _bench("lm", "--help")
    assert r.returncode == 0 and "export" in r.stdout and "grpo" in r.stdout, r.stderr
    r = _bench("run", "--task", "data_mixture", "--method", "random", "--llm-cache", "bogus",
               "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.strip() == \
        "error: --llm-cache must be one of readwrite, read, write, off (got 'bogus')"


def test_a_plugin_of_another_distribution(tmp_path):
    env = _install(tmp_path / "site", "toy = toy_plugin:plugin", PLUGIN)
    r = _bench("toy", "--word", "hello", env=env)
    assert r.returncode == 0 and "toy says hello" in r.stdout, r.stderr
    r = _bench("run", "--task", "data_mixture", "--method", "nope", "--out", str(tmp_path / "out"), env=env)
    assert r.returncode == 2 and "openai:MODEL, gemini:MODEL" in r.stderr and "toy:NAME" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    code = "from bench.methods import method; s = method('toy:a'); print(s.cls, s.family)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout.split() == ["baselines.random_search:RandomSearch", "baseline"], r.stderr


def test_a_plugin_that_fails_to_load_is_one_line_exit_2(tmp_path):
    env = _install(tmp_path / "site", "broken = no_such_module_here:plugin")
    r = _bench("methods", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "plugin broken = 'no_such_module_here:plugin'" in r.stderr and "ModuleNotFoundError" in r.stderr
