"""The cores the engines bind their threads to."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("affinity", "expected"), [
    ({0, 1}, "0-1"), ({0, 1, 2, 3}, "0-3"), ({0, 2}, "0,2"), ({1}, "1"), ({3, 4, 5}, "3-5")])
def test_engines_bind_to_the_cores_they_may_use(monkeypatch: pytest.MonkeyPatch,
                                                affinity: set[int], expected: str) -> None:
    """Under `taskset -c 0` or a cpuset, vLLM must not bind threads to cores it cannot use."""
    from hardware import cpus

    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: affinity)
    assert cpus.usable_cores() == expected
