"""`bench`: the command line (typer). User errors end with one line and exit code 2."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench import plugins
from bench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="LLMConfig-Bench: configure expensive LLM experiments from cheap ones.")
data_app = typer.Typer(no_args_is_help=True, help="Declared data sources.")
app.add_typer(data_app, name="data")
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

Out = Annotated[Path, typer.Option(
    "--out", help="Results directory to write (default ./runs; the published results/ is written only "
                  "when named explicitly).")]
DEFAULT_OUT = Path("runs")
Runs = Annotated[Path | None, typer.Option("--runs", help="Results directory to read (default ./runs).")]
# `--out` for the results a command reads: the spelling before --runs, kept for one release.
OldOut = Annotated[Path | None, typer.Option("--out", hidden=True, help="Deprecated: use --runs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
MethodsFile = Annotated[Path | None, typer.Option(
    "--methods", metavar="FILE", help="Your method presets (a YAML like configs/methods.yaml), "
                                      "merged over the built-in ones; default $BENCH_METHODS.")]
MethodParams = Annotated[str | None, typer.Option(
    "--method-params", metavar="JSON", help="Parameters of the module:Class method in --method, a JSON "
                                            "object, e.g. '{\"top_k\": 3}'.")]
Metric = Annotated[str, typer.Option(
    "--metric", metavar="[pregret|nregret]",
    help="The score tables, ranks and figures use: pregret (the share of the target pool better "
         "than the best run found; 0 = optimum, 1 = worst) or nregret (0 = optimum, 1 = median).")]


def _table(title: str, df) -> Table:
    """`df` as a rich table, its text shown as is (`[interval]` is no markup)."""
    from rich.markup import escape

    t = Table(title=escape(title))
    for c in df.columns:
        t.add_column(escape(str(c)))
    for row in df.itertuples(index=False):
        t.add_row(*[escape(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
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
def list_methods(methods_file: MethodsFile = None) -> None:
    """List the methods: family, what they need, whether they can run here."""
    from bench.methods import methods, use

    use(methods_file)

    t = Table(title="methods")
    for c in ["method", "family", "needs", "available", "description"]:
        t.add_column(c)
    for name, spec in methods().items():
        needs = [*spec.needs, *(["training"] if spec.learned else [])]
        missing = spec.missing()
        t.add_row(name, spec.family, ", ".join(needs) or "-",
                  "yes" if not missing else f"no ({'; '.join(missing)})", spec.description)
    console.print(t)


@data_app.command("fetch")
def data_fetch(source: Annotated[list[str] | None, typer.Argument(
                   help="Sources (default: every outcome table; a model only when named).")] = None,
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
    methods_file: MethodsFile = None,
    method_params: MethodParams = None,
    quiet: Quiet = False,
) -> None:
    """Run episodes of a suite; completed episodes are skipped (resume)."""
    from bench.gym.registry import resolve_tasks
    from bench.gym.suites import load_suite
    from bench.methods import resolve_methods, skipped_by_all, use
    from bench.runner import run_suite
    from bench.store import Store

    if jobs < 1:
        raise BenchError(f"--jobs must be at least 1 (got {jobs})")
    if executor not in ("local", "dask"):
        raise BenchError(f"--executor must be local or dask (got {executor!r})")
    if episode_timeout is not None and episode_timeout <= 0:
        raise BenchError(f"--episode-timeout must be positive (got {episode_timeout:g})")
    s = load_suite(suite).overridden(
        budget=budget, seeds=seeds, gap=gap, prior_budget=prior_budget,
        experiments=[e.strip() for e in experiments.split(",")] if experiments else None)
    plugins.configure_run({"llm_cache": llm_cache})  # checked and exported by the agents' plugin
    use(methods_file, method_params, method)  # exported to the workers too
    task_refs, method_names = resolve_tasks(task), resolve_methods(method)
    if not quiet and "all" in [m.strip() for m in method.split(",")]:
        for name, why in skipped_by_all().items():
            console.print(f"skipped method {name}: {'; '.join(why)}", highlight=False)
    store = Store(out)
    store.check_writable()
    t0 = time.perf_counter()

    def planned(p) -> None:
        if not quiet:
            for line in p.skipped:
                console.print(f"skipped {line}", highlight=False)
            same = f", {len(p.copies)} the same as another suite's (copied, not run)" if p.copies else ""
            console.print(f"suite {s.name}: {len(p.todo)} episodes to run{same}, {p.done} already done "
                          f"-> {out}")

    _, writer = run_suite(s, task_refs, method_names, store, jobs=jobs, executor=executor,
                          scheduler=scheduler, limit=episode_timeout or s.episode_timeout,
                          retry_failed=retry_failed, quiet=quiet, planned=planned)
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
    methods_arg: Annotated[str | None, typer.Argument(metavar="[METHOD]", show_default=False,
                                                      help="Learned method(s), comma-separated.")] = None,
    task: Annotated[str, typer.Option(help="Task name(s), comma-separated, `all`, or a spec .yaml.")] = "",
    method: Annotated[str | None, typer.Option(help="Learned method(s) (or as the argument).")] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Train again even if the checkpoint exists.")] = False,
    methods_file: MethodsFile = None,
    method_params: MethodParams = None,
    quiet: Quiet = False,
) -> None:
    """Meta-train learned methods on a task's train experiments; checkpoints go to the cache."""
    from bench.gym.registry import resolve_tasks
    from bench.methods import method as method_spec
    from bench.methods import use
    from bench.runner import train_with_progress

    method = method or methods_arg or ""
    use(methods_file, method_params, method)
    if not task:
        raise BenchError("--task is required (a name, a comma list, `all` or a spec .yaml)")
    specs = [method_spec(m.strip()) for m in method.split(",") if m.strip()]
    if not specs or (untrained := [s.name for s in specs if not s.learned]):
        raise BenchError(f"--method needs learned methods; {', '.join(untrained or ['none'])} "
                         "do not train (see `bench methods`)")
    for ref in resolve_tasks(task):
        for spec in specs:
            ckpt, path = train_with_progress(spec, ref, seed=seed, force=force, quiet=quiet)
            m = ckpt.meta
            score = f"{m['validation_pregret']:.3f}" if "validation_pregret" in m else \
                "n/a (a checkpoint from before pregret: --force retrains it)"
            console.print(f"{spec.name} on {m['task']}: {len(m['fit'])} fit / {len(m['validation'])} "
                          f"validation experiments, {m['train_seconds']:.1f} s, validation pregret "
                          f"{score} -> {path}", highlight=False)
            for key, value in (m.get("report") or {}).items():
                console.print(f"  {key}: {value}", highlight=False)


def _runs_dir(runs: Path | None, old_out: Path | None) -> Path:
    """The results directory a command reads: --runs, or the deprecated --out (one warning line)."""
    if old_out is not None:
        if runs is not None and runs.resolve() != old_out.resolve():
            raise BenchError(f"--runs {runs} and --out {old_out} name different results directories; "
                             "give --runs only (--out is deprecated for reading results)")
        err.print("--out is deprecated for reading results; use --runs", highlight=False, markup=False)
    return runs or old_out or DEFAULT_OUT


@app.command()
def pack(runs: Runs = None) -> None:
    """Pack a results directory's completed episodes into one Parquet file per suite
    (<runs>/packed/<suite>.parquet, every trial and summary; their loose files are removed): the form
    results/ is published in. Every command reads packed and loose episodes alike."""
    from bench.store import Store

    store = Store(runs or DEFAULT_OUT)
    if not store.out.is_dir():
        raise BenchError(f"no results directory {store.out}; run `bench run` first")
    with store.lock():
        moved = store.pack()
    sizes = sum(p.stat().st_size for p in (store.out / "packed").glob("*.parquet"))
    console.print(f"packed {moved} episodes; {len(store.packed())} in {store.out / 'packed'} "
                  f"({sizes / 1e6:.1f} MB)", highlight=False)


@app.command()
def forget(method: Annotated[str, typer.Option("--method", help="The method whose episodes go.")],
           runs: Runs = None,
           task: Annotated[str | None, typer.Option(help="Only these tasks (comma-separated).")] = None,
           suite: Annotated[str | None, typer.Option(
               help="Only these suites (comma-separated; a ladder's name picks its gaps).")] = None) -> None:
    """Delete one method's episodes from a results directory, packed and loose: after you change your
    optimizer, so that `bench run` runs it again. Other methods' episodes are untouched."""
    import pandas as pd

    from bench.report import pick_suites
    from bench.store import Store

    store = Store(runs or DEFAULT_OUT)
    keys = [key for key, _ in store.summaries()]
    mine = pd.DataFrame([(k.suite, k.task) for k in keys if k.method == method], columns=["suite", "task"])
    if mine.empty:
        held = sorted({k.method for k in keys})
        raise BenchError(f"no episodes of method {method!r} in {store.out}"
                         + (f"; it holds: {', '.join(held)}" if held else ""))
    suites = pick_suites(mine, suite) if suite else None
    tasks = [t.strip() for t in task.split(",") if t.strip()] if task else None
    missing = sorted(set(tasks or []) - set(mine.task))
    if missing:
        raise BenchError(f"no episodes of {method} on task {', '.join(missing)} in {store.out}; "
                         f"it has: {', '.join(sorted(mine.task.unique()))}")
    with store.lock():
        gone = store.forget(method, tasks, suites)
    console.print(f"deleted {gone} episodes of {method} from {store.out}; run `bench leaderboard` or "
                  "`bench report` again to update the tables written from them", highlight=False)


@app.command("leaderboard")
def leaderboard_cmd(runs: Runs = None,
                    suite: Annotated[str | None, typer.Option(
                        help="Only these suites (comma-separated; a ladder's name picks its gaps).")] = None,
                    metric: Metric = "pregret",
                    old_out: OldOut = None) -> None:
    """Aggregate completed episodes into <runs>/leaderboard.csv and print it: per task, then each
    suite's tasks weighed once (mean of per-task means and ranks), then each distance ladder's
    headline (per task, the mean over the distances it offers), then each preset's variants
    against it (paired differences)."""
    from bench.metrics import (
        across_tasks,
        check_metric,
        discrimination,
        episodes_frame,
        leaderboard,
        missing_tasks,
        unpaired,
    )
    from bench.report import (
        across_view,
        board_view,
        ladder_views,
        legend,
        missing_note,
        pick_suites,
        variants_views,
    )
    from bench.store import Store

    out = _runs_dir(runs, old_out)
    check_metric(metric)
    ep = episodes_frame(Store(out).summaries())
    if ep.empty:
        raise BenchError(f"no completed episodes under {out}; run `bench run` first")
    if suite:
        ep = ep[ep.suite.isin(pick_suites(ep, suite))]
    board = leaderboard(ep, metric)
    path = out / "leaderboard.csv"
    board.to_csv(path, index=False)
    for (s, t), sub in board.groupby(["suite", "task"], sort=False):
        console.print(_table(f"{s} / {t}" + (" (SIMULATED)" if sub.simulated.any() else ""),
                             board_view(sub, metric, compact=True)))
    missing = missing_tasks(ep)
    for s, rows in across_tasks(ep, metric, board).groupby("suite", sort=True):
        if rows.tasks.max() > 1:
            sim = sorted(board[(board.suite == s) & board.simulated].task.unique())
            title = f"{s} / all tasks, each weighed once" + (
                f" (incl. SIMULATED {', '.join(sim)})" if sim else "")
            console.print(_table(title, across_view(rows)))
            note = missing_note(missing, s)
            if note:
                console.print(note, highlight=False)
    for title, view, notes in ladder_views(ep, board, metric):  # distance ladders: one headline each
        console.print(_table(title, view))
        console.print("\n".join(notes), highlight=False)
    for against, table in variants_views(ep, metric)[1].items():  # a preset's variants (ablations)
        console.print(_table(f"variants of {against}: variant - {against}, {metric}, paired [95% interval]; "
                             "**: the interval excludes 0; a ladder: over its distances", table))
    console.print(legend(metric) + f" {path} has every column, of both metrics.", highlight=False)
    disc = discrimination(board, metric)
    for s_name, d in disc.groupby("suite"):
        console.print(f"suite {s_name}: best and median method by {metric} separated (disjoint "
                      f"intervals) in {int(d.separated.sum())} of {len(d)} (task, budget) cells "
                      f"({d.separated.mean():.0%})", highlight=False)
    left = unpaired(ep)
    for row in left.itertuples(index=False):
        console.print(f"not in the paired comparison: {row.method} on {row.suite}/{row.task} "
                      f"{row.budget_kind}={row.budget:g}: {row.left_out} episode(s) in cells other "
                      f"methods lack", highlight=False)
    console.print(f"wrote {path}")


@app.command()
def plot(runs: Runs = None,
         suite: Annotated[str | None, typer.Option(help="Only these suites (comma-separated).")] = None,
         task: Annotated[str | None, typer.Option(
             help="Tasks that are not built in (spec .yaml, comma-separated), for their landscape and "
                  "near-optimum share; built-in tasks in the results are found by name.")] = None,
         metric: Metric = "pregret",
         old_out: OldOut = None) -> None:
    """Render the figures (regret, rank, critical difference, near-optimum share, discrimination,
    extrapolation, distance ladders, landscapes; PNG and PDF) into <runs>/figures, scores and ranks
    on --metric."""
    from bench.gym.registry import resolve_tasks
    from bench.metrics import check_metric, episodes_frame, leaderboard
    from bench.report import load_tasks, pick_suites, write_figures
    from bench.store import Store

    out = _runs_dir(runs, old_out)
    check_metric(metric)
    store = Store(out)
    ep = episodes_frame(store.summaries())
    if ep.empty and task is None:
        raise BenchError(f"no completed episodes under {out}; run `bench run` first (or give --task)")
    suites = pick_suites(ep, suite) if not ep.empty else []
    tasks = load_tasks(set(ep[ep.suite.isin(suites)].task), resolve_tasks(task) if task else [],
                       say=functools.partial(console.print, highlight=False))
    for drawn in write_figures(store, ep, leaderboard(ep, metric), out / "figures", suites, tasks, metric):
        for p in drawn.paths:
            console.print(f"wrote {p}")


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="Report directory (created).")],
    runs: Runs = None,
    suite: Annotated[str | None, typer.Option(help="Only these suites (comma-separated).")] = None,
    task: Annotated[str | None, typer.Option(
        help="Tasks that are not built in (spec .yaml, comma-separated).")] = None,
    metric: Metric = "pregret",
) -> None:
    """Write a report (Markdown and HTML, linking the figures), leaderboard CSVs, LaTeX and
    Markdown tables and every figure into --out; tables, ranks and figures on --metric."""
    from bench.gym.registry import resolve_tasks
    from bench.metrics import check_metric
    from bench.report import write_report

    check_metric(metric)
    paths = write_report(runs or DEFAULT_OUT, out, suite, resolve_tasks(task) if task else [],
                         say=functools.partial(console.print, highlight=False), metric=metric)
    console.print(f"wrote {len(paths)} files to {out}: {out / 'report.html'}, "
                  f"{out / 'report.md'}", highlight=False)


@app.command()
def suggest(
    task: Annotated[str, typer.Option(help="Task name or spec .yaml.")],
    method: Annotated[str, typer.Option(help="Method name(s), comma-separated, or `all`.")],
    target: Annotated[str | None, typer.Option(
        help="The expensive fidelity, not in the table: NAME=VALUE for every fidelity column "
             "(e.g. params=7e9,tokens=2e11).")] = None,
    n: Annotated[int, typer.Option("-n", help="Configurations to suggest per method.")] = 3,
    observed: Annotated[Path | None, typer.Option(
        help="CSV of your runs at the target so far (config columns and the objective's): "
             "told to each method first.")] = None,
    experiment: Annotated[str | None, typer.Option(
        help="Experiment to advise on (default: the only one, or the only test one); "
             "--backtest: only this one (default: every test experiment).")] = None,
    budget: Annotated[int | None, typer.Option(
        help="Target runs planned in all (default: observed + n; some methods size their initial "
             "design by it); --backtest: rounds scored (default n).")] = None,
    seed: Annotated[int, typer.Option(help="Seed (pool, orders, methods).")] = 0,
    target_cost: Annotated[float | None, typer.Option(
        help="GPU-hours of one target run (default: a power law fitted on the sweep's levels).")] = None,
    backtest: Annotated[bool, typer.Option(
        help="Score the advice where the target is in the table (held out): regret per method.")] = False,
    seeds: Annotated[int, typer.Option(help="--backtest: seeds 0..N-1.")] = 3,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write suggestions (or backtest) .json/.csv here.")] = None,
    methods_file: MethodsFile = None,
    method_params: MethodParams = None,
    quiet: Quiet = False,
) -> None:
    """Suggest the next configurations to run at an expensive fidelity from your cheaper runs."""
    from bench.gym.registry import load_task
    from bench.methods import method as method_spec
    from bench.methods import resolve_methods, skipped_by_all, use
    from bench.runner import train_with_progress
    from bench.suggest.advice import cannot_advise
    from bench.suggest.advice import suggest as advice_for
    from bench.suggest.backtest import backtest as run_backtest
    from bench.suggest.output import advice_table, backtest_summary, write_backtest, write_suggestions
    from bench.suggest.pool import prepare, read_observed
    from bench.suggest.target import parse_target, pick_experiment, spec_grid

    if n < 1 or (budget is not None and budget < 1) or seeds < 1:
        raise BenchError("-n, --budget and --seeds must be at least 1")
    if backtest and (target or observed or target_cost is not None):
        raise BenchError("--backtest scores the table's own targets: drop --target, --observed and "
                         "--target-cost")
    if not backtest and not target:
        raise BenchError("give --target NAME=VALUE,... (the fidelity to advise on), or --backtest")
    t = load_task(task)
    use(methods_file, method_params, method)
    names = resolve_methods(method)
    skipped = skipped_by_all() if "all" in [m.strip() for m in method.split(",")] else {}
    skipped = {m: "; ".join(why) for m, why in skipped.items()}
    specs = []
    for name in names:
        spec = method_spec(name)
        if (why := cannot_advise(spec, t)) is not None:
            skipped[name] = why
            continue
        if spec.learned:
            train_with_progress(spec, task, quiet=quiet)
        specs.append(spec)
    failed: dict[str, str] = {}
    if backtest:
        exps = [t.experiment(experiment).name] if experiment else t.split("test")
        if not exps:
            raise BenchError(f"task {t.name} has no test experiment to backtest on; give --experiment")
        rows = []
        for spec in specs:
            for exp in exps:
                for s in range(seeds):
                    rows.append(run_backtest(spec, t, exp, s, budget or n, n))
                    if rows[-1]["failed"]:
                        failed[f"{spec.name} {exp} seed {s}"] = rows[-1]["failed"]
            if out:
                write_backtest(out, rows)
        if rows:
            console.print(_table(f"backtest on {t.name} ({', '.join(exps)}): nregret after {budget or n} "
                                 f"suggestions run one at a time (= bench run, budget {budget or n}); "
                                 f"at once: the first {n} run together", backtest_summary(rows)))
    else:
        exp = pick_experiment(t, experiment)
        descriptors = parse_target(target, t)
        runs = read_observed(observed, t, descriptors) if observed else None
        setup = prepare(t, exp, descriptors, spec_grid(task), runs, n, budget, seed, target_cost)
        target_fid = setup.problem.fidelities[-1]
        console.print(f"{t.name}/{exp} at {target_fid.name}: {setup.cost_note}\ntarget pool: "
                      f"{setup.pool_note}\nmethods see {len(setup.problem.prior)} runs of {exp} and "
                      f"{len(setup.observed)} observed target run(s)", highlight=False)
        advices = []
        for spec in specs:
            try:
                advices.append(advice_for(spec, setup, seed, t, n))
            except BenchError:
                raise
            except Exception as exc:  # one method's failure leaves the others' advice
                failed[spec.name] = f"{type(exc).__name__}: {exc}"
                continue
            console.print(advice_table(advices[-1], t.objective))
            if out:
                write_suggestions(out, setup, advices, {**skipped, **failed})
    for name, why in skipped.items():
        console.print(f"skipped {name}: {why}", highlight=False)
    for name, why in failed.items():
        err.print(f"[red]failed[/red] {name}: {why}", highlight=False)
    if out and not quiet:
        console.print(f"wrote {out}/{'backtest' if backtest else 'suggestions'}.json and .csv")
    if failed:
        raise typer.Exit(1)


@functools.cache
def _add_plugin_commands() -> None:
    """The commands of the installed plugins (`bench.plugins`, e.g. the agents' `bench lm`); here
    rather than at import, so that a plugin that fails to load ends as one line and exit code 2."""
    plugins.add_commands(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _add_plugin_commands()
        app(standalone_mode=False)
    except BenchError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; completed episodes are kept, rerun to resume.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors (an unknown option, a bad value): one message
        exc.show()
        sys.exit(2)


if __name__ == "__main__":  # python -m bench.cli (python -m bench is the same)
    main()
