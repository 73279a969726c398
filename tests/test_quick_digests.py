"""The harness gives exactly the recorded trials and scores of the quick suite (see
`quick_digests.py`): a change to the core that changes any number shows here."""

import json

import pytest

from tests.quick_digests import FIXTURE, digests_in_subprocess

RECORDED = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("method", sorted(RECORDED))
def test_quick_suite_trials_are_unchanged(method):
    assert digests_in_subprocess(method) == RECORDED[method]
