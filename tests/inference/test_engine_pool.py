"""The engine pool's on-demand readiness probe, against a stand-in engine over real HTTP."""

from __future__ import annotations

import asyncio

import aiohttp

from inference.gateway.engines import EnginePool
from tests.inference.standin_engine import StandInEngine


async def _readiness_flood(url: str, callers: int) -> list[bool]:
    async with aiohttp.ClientSession() as session:
        pool = EnginePool([url], session)
        pool.engines[0].healthy = False  # as after a failed probe
        return await asyncio.gather(*(pool.serves_model("paper-classifier")
                                      for _ in range(callers)))


def test_concurrent_readiness_checks_share_one_probe(standin: StandInEngine) -> None:
    assert asyncio.run(_readiness_flood(standin.url, 20)) == [True] * 20
    assert standin.health_calls == 1


def test_a_probe_that_finds_the_engine_down_is_not_ready(standin: StandInEngine) -> None:
    standin.script.health_status = 503
    assert asyncio.run(_readiness_flood(standin.url, 3)) == [False] * 3
    assert standin.health_calls == 1
