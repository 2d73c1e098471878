"""A pool of vLLM engines: least-loaded choice among the healthy, failed ones skipped until a
health probe sees them back. With `resolve=True` a hostname (a headless Kubernetes Service)
expands to one engine per address it resolves to."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from inference.engine_headers import PRECISION_HEADER

log = logging.getLogger(__name__)


_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1.0)


class NoEngineAvailable(Exception):
    """No healthy engine right now."""


@dataclass
class Engine:
    url: str
    healthy: bool = True  # optimistic until the first probe says otherwise
    in_flight: int = 0
    last_error: str = ""
    # What the engine computes in and why, from its responses' header (None: not yet seen, or
    # an engine not started by our launcher).
    precision: dict | None = None


async def _expand(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return [url]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port, family=socket.AF_INET, type=socket.SOCK_STREAM
        )
    except OSError:
        return [url]  # unresolvable now: keep the name, the probe will mark it down
    port = f":{parts.port}" if parts.port else ""
    addresses = sorted({info[4][0] for info in infos})
    return [urlunsplit(parts._replace(netloc=f"{a}{port}")) for a in addresses]


def _precision(header: str | None) -> dict | None:
    try:
        value = orjson.loads(header) if header else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class EnginePool:
    def __init__(self, urls: list[str], session: aiohttp.ClientSession,
                 resolve: bool = False) -> None:
        if not urls:
            raise ValueError("at least one engine URL is needed")
        self.configured = list(urls)
        self.session = session
        self.resolve = resolve
        self.engines = [Engine(u.rstrip("/")) for u in urls]
        self._probing: asyncio.Future | None = None  # the on-demand probe now running

    def healthy(self) -> list[Engine]:
        return [e for e in self.engines if e.healthy]

    def pick(self, avoid: frozenset[str] = frozenset()) -> Engine:
        """The least-loaded healthy engine, preferring those not in `avoid` (urls that just
        failed this request) so a retry goes elsewhere when there is somewhere else."""
        healthy = self.healthy()
        if not healthy:
            raise NoEngineAvailable("no healthy engine")
        fresh = [e for e in healthy if e.url not in avoid]
        return min(fresh or healthy, key=lambda e: e.in_flight)

    def mark_failed(self, engine: Engine, reason: str) -> None:
        if engine.healthy:
            log.warning("engine marked down", extra={"engine": engine.url, "reason": reason})
        engine.healthy, engine.last_error = False, reason

    def in_flight(self) -> int:
        return sum(e.in_flight for e in self.engines)

    async def _refresh_addresses(self) -> None:
        urls = [u for c in self.configured for u in await _expand(c)]
        known = {e.url: e for e in self.engines}
        self.engines = [known.get(u.rstrip("/")) or Engine(u.rstrip("/")) for u in urls]

    async def _probe(self, engine: Engine) -> None:
        try:
            async with self.session.get(f"{engine.url}/health", timeout=_PROBE_TIMEOUT) as r:
                ok = r.status == 200
                engine.precision = _precision(r.headers.get(PRECISION_HEADER))
        except (aiohttp.ClientError, TimeoutError) as err:
            ok, engine.last_error = False, type(err).__name__
        if ok and not engine.healthy:
            log.info("engine back", extra={"engine": engine.url})
        engine.healthy = ok

    async def probe_all(self) -> None:
        if self.resolve:
            await self._refresh_addresses()
        await asyncio.gather(*(self._probe(e) for e in self.engines))

    async def _probe_known(self) -> None:
        """Probe the engines known now, once, for everyone who asks while it runs: a flood of
        /readyz sends one /health per engine at a time. No DNS refresh here: that is the
        health loop's, at its own pace."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(
                asyncio.gather(*(self._probe(e) for e in self.engines)))
        # Shielded: a caller that goes away does not cancel the others' probe.
        await asyncio.shield(self._probing)

    async def serves_model(self, model_name: str) -> bool:
        """Ready = some healthy engine lists the expected model. With none healthy the engines
        are probed now, not at the health loop's next turn: a gateway started beside a
        starting engine is ready as soon as the engine serves."""
        if not self.healthy():
            await self._probe_known()
        for engine in self.healthy():
            try:
                async with self.session.get(f"{engine.url}/v1/models",
                                            timeout=_PROBE_TIMEOUT) as response:
                    listed = (await response.json(content_type=None)).get("data", [])
                if any(m.get("id") == model_name for m in listed):
                    return True
            except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
                continue
        return False
