import pandas as pd

from bench.gym.cache import cached_table


def test_cached_table_builds_once_and_rebuilds_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})

    first = cached_table("t", ["regmix"], 1, build)
    again = cached_table("t", ["regmix"], 1, build)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again)
    (path,) = (tmp_path / "tables").glob("t-*.parquet")
    path.write_bytes(b"garbage")
    pd.testing.assert_frame_equal(cached_table("t", ["regmix"], 1, build), first)
    assert len(calls) == 2
    cached_table("t", ["regmix"], 2, build)  # a new loader version is a new cache entry
    assert len(calls) == 3


def test_readable_but_altered_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    good = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    cached_table("t", ["regmix"], 1, lambda: good)
    (path,) = (tmp_path / "tables").glob("t-*.parquet")
    pd.DataFrame({"a": [1, 3], "b": ["x", "y"]}).to_parquet(path, index=False)  # valid, wrong
    calls = []
    again = cached_table("t", ["regmix"], 1, lambda: calls.append(1) or good)
    assert calls == [1]
    pd.testing.assert_frame_equal(again, good)
    pd.testing.assert_frame_equal(cached_table("t", ["regmix"], 1, lambda: 1 / 0), good)  # now trusted
