"""The Locust users' task table follows LOADTEST_ROUTE_ORDER (locust imported in a child: it
patches the interpreter with gevent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_TABLE = ("from loadtest.locustfile import PaperClassifierUser as U; import json; "
          "print(json.dumps([t.__name__ for t in U.tasks]))")


def _task_table(processed_dir: Path, **variables: str) -> list[str]:
    env = os.environ | {"LOADTEST_DATA_DIR": str(processed_dir)} | variables
    out = subprocess.run([sys.executable, "-c", _TABLE], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(("variables", "table"), [
    ({}, ["classify_paper"] * 3 + ["classify_papers"]),
    ({"LOADTEST_SINGLE_WEIGHT": "1", "LOADTEST_BATCH_WEIGHT": "0"}, ["classify_paper"]),
    ({"LOADTEST_ROUTE_ORDER": "alternate"}, ["alternate_routes"]),
])
def test_the_task_table_follows_the_route_order(processed_dir: Path, variables: dict,
                                                table: list[str]) -> None:
    assert _task_table(processed_dir, **variables) == table
