"""Property-based fuzzing of user inputs: any spec YAML and CSV either loads or fails with one
clear `BenchError`, never a traceback."""

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.errors import BenchError
from bench.gym.spec import load_spec

COLUMNS = ["lr", "bs", "params", "tokens", "loss", "exp", "gpu_hours"]
cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-10, 10**12),
                  st.text(string.ascii_letters + string.digits + " ,\"'-.", max_size=6), st.just(""))
csv_text = st.lists(st.lists(cells, min_size=1, max_size=7), min_size=0, max_size=12).map(
    lambda rows: "\n".join(",".join(map(str, r)) for r in [COLUMNS, *rows]))
names = st.sampled_from(COLUMNS + ["nope", ""])
spec_dicts = st.fixed_dictionaries(
    {"name": st.text(string.ascii_letters, min_size=1, max_size=5), "table": st.just("t.csv")},
    optional={
        "objective": st.one_of(st.fixed_dictionaries({"column": names, "direction": st.sampled_from(
            ["minimize", "maximize", "sideways"])}), st.integers(), st.none()),
        "config": st.one_of(st.lists(names, max_size=3), st.lists(st.fixed_dictionaries(
            {"name": names}, optional={"kind": st.sampled_from(["float", "int", "categorical", "x"]),
                                       "log": st.booleans()}), max_size=2), st.text(max_size=3)),
        "fidelity": st.one_of(st.lists(names, max_size=3), st.just([]), st.none()),
        "cost": st.one_of(st.fixed_dictionaries({}, optional={"column": names, "mfu": st.floats(-1, 2)}),
                          st.just("free")),
        "experiment": st.one_of(names, st.none()),
        "test": st.one_of(st.lists(st.text(max_size=4), max_size=2), st.none()),
    })
raw_yaml = st.one_of(spec_dicts.map(yaml.safe_dump), st.text(max_size=60))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=raw_yaml, csv=csv_text)
def test_any_spec_and_csv_load_or_fail_clearly(tmp_path, spec, csv):
    (tmp_path / "t.csv").write_text(csv)
    (tmp_path / "s.yaml").write_text(spec)
    try:
        task = load_spec(tmp_path / "s.yaml")
    except BenchError as exc:
        assert str(exc).strip()  # a message, not an empty error
        return
    assert task.experiments  # loaded: a usable task
