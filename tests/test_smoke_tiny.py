from bench.gym.problem import Budget


def test_tiny_task_shapes(tiny_task):
    assert tiny_task.split("test") == ["b"]
    exp = tiny_task.experiment("b")
    assert [f.descriptors["params"] for f in exp.fidelities] == [1e6, 1e8]
    assert tiny_task.space["lr"].log
    p = tiny_task.problem("b", Budget("trials", 2))
    assert len(p.prior) == 3 and set(p.prior.fidelity) == {exp.fidelities[0].name}
