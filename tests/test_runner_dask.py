"""The runner on a Dask cluster (a local one here) gives the same episodes as local workers."""

import pytest

from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.metrics import episodes_frame
from bench.runner import execute, plan
from bench.store import Store


def _scores(out):
    ep = episodes_frame(Store(out).summaries())
    return ep.set_index(["method", "experiment", "budget", "seed"])["score"].sort_index()


@pytest.mark.slow
def test_dask_scheduler_matches_local_workers(tmp_path):
    from dask.distributed import LocalCluster

    suite = load_suite("quick").model_copy(update={"seeds": 1})
    load_task("data_mixture")
    runs = {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        for name, scheduler in (("dask", cluster.scheduler_address), ("local", None)):
            store = Store(tmp_path / name)
            p = plan(suite, ["data_mixture"], ["random", "best-prior"], store)
            assert execute(p, suite, store, jobs=1, scheduler=scheduler, quiet=True).failures == []
            runs[name] = _scores(store.out)
    assert len(runs["dask"]) == 2 * 2 * 2
    assert runs["dask"].equals(runs["local"])
