"""`bench`: the command line (typer). User errors end with one line and exit code 2."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="LLMConfig-Bench: configure expensive LLM experiments from cheap ones.")
data_app = typer.Typer(no_args_is_help=True, help="Declared data sources.")
app.add_typer(data_app, name="data")
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

Out = Annotated[Path, typer.Option(
    "--out", help="Results directory (default ./runs; the published results/ is written only when "
                  "named explicitly).")]
DEFAULT_OUT = Path("runs")
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _table(title: str, df) -> Table:
    t = Table(title=title)
    for c in df.columns:
        t.add_column(str(c))
    for row in df.itertuples(index=False):
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    return t


def _fidelity_summary(names: list[str], show: int = 6) -> str:
    if len(names) <= show:
        return ", ".join(names)
    return f"{len(names)} levels: {', '.join(names[:2])}, …, {', '.join(names[-2:])}"


@app.command()
def tasks(describe: Annotated[str | None, typer.Option(
        "--describe", metavar="TASK",
        help="Print the card of one task (a name or a spec .yaml): sources, fidelities, split, "
             "landscape diagnostics.")] = None) -> None:
    """List the built-in tasks: experiments (train/test), fidelities, source, licence."""
    from bench.data import SOURCES
    from bench.gym.registry import load_task, task_names

    if describe is not None:
        _print_card(load_task(describe))
        return
    t = Table(title="tasks")
    for c in ["task", "experiments (train/test)", "fidelities (cheap → target)", "source", "licence"]:
        t.add_column(c)
    for name in task_names():
        task = load_task(name)
        fids = task.fidelities()
        src = ", ".join(task.sources) + (" (simulated)" if task.simulated else "")
        t.add_row(name, f"{len(task.split('train'))}/{len(task.split('test'))}",
                  _fidelity_summary([f.name for f in fids]), src,
                  ", ".join(SOURCES[s].licence for s in task.sources))
    console.print(t)


def _print_card(task) -> None:
    """A task card: what the task is, where its data comes from, and how its landscape shifts."""
    import pandas as pd

    from bench.data import SOURCES
    from bench.gym import diagnostics

    console.rule(f"task {task.name}" + (" (SIMULATED)" if task.simulated else ""))
    console.print(task.description, highlight=False)
    for name in task.sources:
        src = SOURCES.get(name)
        if src is None:
            console.print(f"source: {name} (not a declared source)", highlight=False)
            continue
        console.print(f"source: {name} - github.com/{src.repository} @ {src.commit[:10]}; "
                      f"licence: {src.licence}\ncitation: {src.citation}", highlight=False)
    if not task.sources:
        console.print("source: none declared (a user's own table)")
    simulated = "yes - outcomes come from a calibrated simulator" if task.simulated else "no"
    console.print(f"simulated: {simulated}")
    unit = f" ({task.objective.unit})" if task.objective.unit else ""
    kinds = {n: type(hp).__name__.removeprefix("Uniform").removesuffix("Hyperparameter").lower()
             + (", log" if getattr(hp, "log", False) else "") for n, hp in task.space.items()}
    console.print(f"objective: {task.objective.direction} {task.objective.name}{unit}; search space: "
                  + ", ".join(f"{n} ({k})" for n, k in kinds.items()), highlight=False)

    counts = task.table.groupby("fidelity").experiment.nunique()
    runs = task.table.groupby(["fidelity", "experiment"]).size().groupby("fidelity").median()
    console.print(_table("fidelities (cheapest first)", pd.DataFrame([
        {"fidelity": f.name, **{k: f"{v:.4g}" for k, v in f.descriptors.items()},
         "GPU-hours/run": f.cost, "experiments": int(counts[f.name]), "runs each": int(runs[f.name])}
        for f in task.fidelities()]).fillna("-")))
    for split in ("train", "test"):
        names = task.split(split)
        console.print(f"{split} ({len(names)}): {', '.join(names) or '-'}", highlight=False)
    if task.notes:
        console.rule("notes")
        console.print(task.notes.strip(), highlight=False, markup=False)

    console.rule("landscape diagnostics")
    corr, shift = diagnostics.rank_correlations(task), diagnostics.optimum_shift(task)
    pairs = corr.groupby(["lower", "upper"], sort=False).agg(
        experiments=("experiment", "size"), spearman_median=("spearman", "median"),
        method=("method", lambda m: "/".join(sorted(set(m)))), n_median=("n", "median"),
    ).reset_index()
    console.print(_table("Spearman rank correlation of outcomes between adjacent fidelities "
                         "(median over experiments; exact matches, or nearest candidate)", pairs))
    test = shift[shift.split == "test"]
    shown = diagnostics.moving_params(task.space, test, most=8)
    console.print(_table("optimum per fidelity, test experiments (distance: unit-cube distance from "
                         "the target's optimum; target_nregret: its nearest target candidate)",
                         test[["experiment", "fidelity", *shown, "value", "distance", "target_nregret"]]))
    console.print(_table("per experiment (shift: optimum of the most expensive prior fidelity vs the "
                         "target's); last row: median", diagnostics.summary(task, corr, shift)))


@app.command("methods")
def list_methods() -> None:
    """List the methods: family, what they need, whether they can run here."""
    from bench.methods import methods

    t = Table(title="methods")
    for c in ["method", "family", "needs", "available", "description"]:
        t.add_column(c)
    for name, spec in methods().items():
        needs = [*spec.needs, *(["training"] if spec.needs_training else [])]
        missing = spec.missing()
        t.add_row(name, spec.family, ", ".join(needs) or "-",
                  "yes" if not missing else f"no ({'; '.join(missing)})", spec.description)
    console.print(t)


@data_app.command("fetch")
def data_fetch(source: Annotated[list[str] | None, typer.Argument(help="Sources (default: all).")] = None,
               quiet: Quiet = False) -> None:
    """Download and verify every declared source file into the cache (or check the mirror)."""
    from bench.data import fetch

    paths = fetch(source or None, progress=not quiet)
    console.print(f"{len(paths)} files verified (sha256).")


@app.command()
def run(
    task: Annotated[str, typer.Option(help="Task name(s), comma-separated, `all`, or a spec .yaml.")],
    method: Annotated[str, typer.Option(help="Method name(s), comma-separated, or `all`.")] = "all",
    suite: Annotated[str, typer.Option(help="Suite name or .yaml path.")] = "paper",
    budget: Annotated[float | None, typer.Option(help="Override the suite's budgets with one.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Override the number of seeds.")] = None,
    experiments: Annotated[str | None, typer.Option(help="Comma-separated experiment names.")] = None,
    gap: Annotated[float | None, typer.Option(
        help="Override the suite's gap g (prior fidelities cost at most target/g); results go to "
             "suite <name>-gap<g>.")] = None,
    prior_budget: Annotated[float | None, typer.Option(
        help="Override the suite's prior budget k (target-run equivalents); results go to suite "
             "<name>-k<k>.")] = None,
    jobs: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    executor: Annotated[str, typer.Option(
        help="local (worker processes here) or dask (a LocalCluster of --jobs workers, or the "
             "cluster at --scheduler).")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (cluster).")] = None,
    episode_timeout: Annotated[float | None, typer.Option(
        help="Seconds an episode may run (default: the suite's); past it, a failure `timeout`.")] = None,
    out: Out = DEFAULT_OUT,
    retry_failed: Annotated[bool, typer.Option(help="Run failed episodes again.")] = False,
    llm_cache: Annotated[str | None, typer.Option(
        help="LLM response cache: readwrite (default), read, write or off ($BENCH_LLM_CACHE).")] = None,
    quiet: Quiet = False,
) -> None:
    """Run episodes of a suite; completed episodes are skipped (resume)."""
    from bench.gym.registry import resolve_tasks
    from bench.methods import resolve_methods, skipped_by_all
    from bench.runner import execute, plan, train_first
    from bench.store import Store
    from bench.suites import load_suite

    s = load_suite(suite)
    if budget is not None:
        if budget <= 0 or (s.budget == "trials" and budget != int(budget)):
            need = "a whole number of trials" if s.budget == "trials" else "positive"
            raise BenchError(f"--budget must be {need} for suite {s.name} (got {budget:g})")
        s = s.model_copy(update={"budgets": [budget]})
    if seeds is not None:
        if seeds < 1:
            raise BenchError(f"--seeds must be at least 1 (got {seeds})")
        s = s.model_copy(update={"seeds": seeds, "seeds_by_family": {}})
    if jobs < 1:
        raise BenchError(f"--jobs must be at least 1 (got {jobs})")
    if executor not in ("local", "dask"):
        raise BenchError(f"--executor must be local or dask (got {executor!r})")
    if episode_timeout is not None and episode_timeout <= 0:
        raise BenchError(f"--episode-timeout must be positive (got {episode_timeout:g})")
    if gap is not None:
        if gap < 1:
            raise BenchError(f"--gap must be at least 1 (got {gap:g})")
        s = s.model_copy(update={"gap": gap, "name": f"{s.name}-gap{gap:g}"})
    if prior_budget is not None:
        if prior_budget <= 0:
            raise BenchError(f"--prior-budget must be positive (got {prior_budget:g})")
        s = s.model_copy(update={"prior_budget": prior_budget, "name": f"{s.name}-k{prior_budget:g}"})
    if llm_cache is not None:
        from agents.llm.cache import MODES as LLM_CACHE_MODES

        if llm_cache not in LLM_CACHE_MODES:
            raise BenchError(f"--llm-cache must be one of {', '.join(LLM_CACHE_MODES)} (got {llm_cache!r})")
        os.environ["BENCH_LLM_CACHE"] = llm_cache  # read by the agents, in every spawned worker
    task_refs, method_names = resolve_tasks(task), resolve_methods(method)
    if not quiet and "all" in [m.strip() for m in method.split(",")]:
        for name, why in skipped_by_all().items():
            console.print(f"skipped method {name}: {'; '.join(why)}", highlight=False)
    if experiments:
        s = s.model_copy(update={"experiments": [e.strip() for e in experiments.split(",")]})
    store = Store(out)
    store.check_writable()
    with store.lock():
        p = plan(s, task_refs, method_names, store, retry_failed=retry_failed)
        if not quiet:
            for line in p.skipped:
                console.print(f"skipped {line}", highlight=False)
            console.print(f"suite {s.name}: {len(p.todo)} episodes to run, {p.done} already done "
                          f"-> {out}")
        t0 = time.perf_counter()
        train_first(p, quiet=quiet)
        writer = execute(p, s, store, jobs=jobs, scheduler=scheduler, quiet=quiet, executor=executor,
                         limit=episode_timeout or s.episode_timeout)
    failures = writer.failures
    if not quiet:
        per_method = ", ".join(f"{m} {sec:.1f} s" for m, sec in sorted(writer.seconds.items()))
        console.print(f"done in {time.perf_counter() - t0:.1f} s" + (f" (episode time: {per_method})"
                                                                    if per_method else ""))
    if failures:
        for key, error in failures[:10]:
            err.print(f"[red]failed[/red] {key.task}/{key.method}/{key.experiment}/{key.stem()}: {error}")
        err.print(f"{len(failures)} episode(s) failed (tracebacks in *.error.txt); they are scored as "
                  "failures; `bench run ... --retry-failed` runs them again.")
        raise typer.Exit(1)


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Option(help="Learned method(s), comma-separated.")],
    task: Annotated[str, typer.Option(help="Task name(s), comma-separated, `all`, or a spec .yaml.")],
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Train again even if the checkpoint exists.")] = False,
    quiet: Quiet = False,
) -> None:
    """Meta-train learned methods on a task's train experiments; checkpoints go to the cache."""
    from bench.gym.registry import resolve_tasks
    from bench.methods import method as method_spec
    from bench.runner import train_with_progress

    specs = [method_spec(m.strip()) for m in method.split(",") if m.strip()]
    if not specs or (untrained := [s.name for s in specs if not s.needs_training]):
        raise BenchError(f"--method needs learned methods; {', '.join(untrained or ['none'])} "
                         "do not train (see `bench methods`)")
    for ref in resolve_tasks(task):
        for spec in specs:
            ckpt, path = train_with_progress(spec, ref, seed=seed, force=force, quiet=quiet)
            m = ckpt.meta
            console.print(f"{spec.name} on {m['task']}: {len(m['fit'])} fit / {len(m['validation'])} "
                          f"validation experiments, {m['train_seconds']:.1f} s, validation nregret "
                          f"{m['validation_nregret']:.3f} -> {path}", highlight=False)


@app.command("leaderboard")
def leaderboard_cmd(out: Out = DEFAULT_OUT,
                    suite: Annotated[str | None, typer.Option(help="Only this suite.")] = None) -> None:
    """Aggregate completed episodes into <out>/leaderboard.csv and print it."""
    from bench.metrics import discrimination, episodes_frame, leaderboard, unpaired
    from bench.store import Store

    ep = episodes_frame(Store(out).summaries())
    if suite:
        ep = ep[ep.suite == suite]
    if ep.empty:
        raise BenchError(f"no completed episodes under {out}; run `bench run` first")
    board = leaderboard(ep)
    path = out / "leaderboard.csv"
    board.to_csv(path, index=False)
    for (s, t), sub in board.groupby(["suite", "task"], sort=False):
        console.print(_table(f"{s} / {t}" + (" (SIMULATED)" if sub.simulated.any() else ""),
                             _board_view(sub)))
    console.print("nregret: 0 = the table's optimum, 1 = the median candidate; mean [95% interval, "
                  "hierarchical bootstrap over experiments then seeds]; IQM: interquartile mean. "
                  "rank and win% vs centroid (the floor: target candidates nearest the pool's "
                  "centroid, no outcomes used) over the (experiment, seed) cells all methods have.",
                  highlight=False)
    disc = discrimination(board)
    for s_name, d in disc.groupby("suite"):
        console.print(f"suite {s_name}: best and median method separated (disjoint 95% intervals) in "
                      f"{int(d.separated.sum())} of {len(d)} (task, budget) cells ({d.separated.mean():.0%})",
                      highlight=False)
    left = unpaired(ep)
    for row in left.itertuples(index=False):
        console.print(f"not in the paired comparison: {row.method} on {row.suite}/{row.task} "
                      f"{row.budget_kind}={row.budget:g}: {row.left_out} episode(s) in cells other "
                      f"methods lack", highlight=False)
    console.print(f"wrote {path}")


def _board_view(sub):
    """The printed leaderboard: intervals as text, cost columns only for cost suites."""
    import pandas as pd

    def interval(mean, lo, hi):
        return [f"{m:.3g} [{a:.3g}, {b:.3g}]" for m, a, b in zip(mean, lo, hi, strict=True)]

    view = pd.DataFrame({
        "method": sub.method, "budget": sub.budget.map("{:g}".format),
        "nregret mean [95%]": interval(sub.nregret_mean, sub.nregret_lo, sub.nregret_hi),
        "IQM [95%]": interval(sub.nregret_iqm, sub.nregret_iqm_lo, sub.nregret_iqm_hi),
        "median": sub.nregret_median, "rank": sub.rank_mean,
        "win% vs centroid": (100 * sub.win_vs_centroid).round(0),
        "episodes": sub.episodes, "failed": sub.failed, "pool": sub.pool_size.map("{:g}".format),
    })
    if (sub.budget_kind == "cost").any():
        view["budget spent"] = sub.budget_spent.map("{:.0%}".format)
    else:
        view["GPU-h"] = sub.gpu_hours_mean
    return view.fillna("-")


@app.command()
def plot(out: Out = DEFAULT_OUT,
         suite: Annotated[str | None, typer.Option(help="Only this suite.")] = None,
         task: Annotated[str | None, typer.Option(
             help="Landscape figures of these tasks (names or spec .yaml, comma-separated); "
                  "default: the built-in tasks in the results.")] = None) -> None:
    """Render regret-vs-trials figures and per-task landscapes (PNG and PDF) into <out>/figures."""
    from bench.gym.registry import load_task, resolve_tasks, task_names
    from bench.metrics import discrimination, episodes_frame, leaderboard
    from bench.plots import discrimination_figure, extrapolation_figure, landscape, regret_curves
    from bench.store import Store

    ep = episodes_frame(Store(out).summaries())
    if ep.empty and task is None:
        raise BenchError(f"no completed episodes under {out}; run `bench run` first (or give --task)")
    disc = discrimination(leaderboard(ep)) if not ep.empty else None
    for s in [suite] if suite else sorted(ep.suite.unique()):
        for p in [*regret_curves(ep, s, out / "figures"), *discrimination_figure(disc, s, out / "figures")]:
            console.print(f"wrote {p}")
    for p in extrapolation_figure(ep, out / "figures"):  # from every trial suite (a --gap sweep)
        console.print(f"wrote {p}")
    in_results = set((ep[ep.suite == suite] if suite else ep).task)
    refs = resolve_tasks(task) if task else sorted(in_results & set(task_names()))
    for name in sorted(in_results - set(task_names()) - {load_task(r).name for r in refs}):
        console.print(f"no landscape for {name}: not a built-in task; pass --task path/to/spec.yaml")
    for ref in refs:
        for p in landscape(load_task(ref), out / "figures"):
            console.print(f"wrote {p}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=False)
    except BenchError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; completed episodes are kept, rerun to resume.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
