"""Declared sources: verification messages, mirror handling, and a real download over HTTP."""

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

import bench.data.sources as sources
from bench.data import SOURCES, path_of
from bench.errors import BenchError

FILE = "data/test_mixture_1B.csv"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A private copy of the regmix mirror files that tests may damage."""
    real = Path(__import__("os").environ["BENCH_DATA_MIRROR"])
    shutil.copytree(real / "regmix", tmp_path / "regmix")
    monkeypatch.setenv("BENCH_DATA_MIRROR", str(tmp_path))
    return tmp_path


def test_every_declared_file_verifies_in_the_mirror():
    for name, src in SOURCES.items():
        for f in src.files:
            assert path_of(name, f.path).stat().st_size == f.size


def test_truncated_file_is_named_with_the_fix(mirror):
    target = mirror / "regmix" / FILE
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(BenchError, match=r"test_mixture_1B\.csv is truncated.*Fix: restore"):
        path_of("regmix", FILE)


def test_altered_file_same_size(mirror):
    target = mirror / "regmix" / FILE
    data = bytearray(target.read_bytes())
    data[-3] = ord("9") if data[-3] != ord("9") else ord("8")
    target.write_bytes(bytes(data))
    with pytest.raises(BenchError, match="is altered"):
        path_of("regmix", FILE)


def test_missing_file_in_mirror(mirror):
    (mirror / "regmix" / FILE).unlink()
    with pytest.raises(BenchError, match="missing from BENCH_DATA_MIRROR"):
        path_of("regmix", FILE)


@pytest.fixture
def raw_server(tmp_path):
    """A local HTTP server laid out like raw.githubusercontent.com/<repo>/<commit>/<path>."""
    import os

    real = Path(os.environ["BENCH_DATA_MIRROR"])
    src = SOURCES["regmix"]
    root = tmp_path / "www"
    shutil.copytree(real / "regmix", root / src.repository / src.commit)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_download_into_cache_and_verify(raw_server, tmp_path, monkeypatch):
    url, root = raw_server
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "RAW_URL", url + "/{repository}/{commit}/{path}")
    got = path_of("regmix", FILE)
    assert got == tmp_path / "cache" / "data" / "regmix" / FILE
    assert got.stat().st_size == SOURCES["regmix"].file(FILE).size
    # a damaged cache file is reported, with the fix
    got.write_bytes(b"index\n")
    with pytest.raises(BenchError, match="truncated.*bench data fetch"):
        path_of("regmix", FILE)


def test_network_error_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_MIRROR")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "RAW_URL", "http://127.0.0.1:9/{repository}/{commit}/{path}")
    with pytest.raises(BenchError, match="could not download"):
        path_of("regmix", FILE)
    assert not list((tmp_path / "cache").rglob("*.part"))
