"""A stand-in for vLLM's OpenAI server, in process: `GET /health`, `GET /v1/models` and
`POST /v1/completions` answering label log-probabilities keyed `token_id:N` (as vLLM does with
`return_tokens_as_token_ids`), with the precision header the launcher's middleware adds.
Scriptable per test through `engine.script`: the probability to answer, a status to fail with
(for the first n calls or all), a delay (slow engine, or one that times the gateway out), a
malformed answer. It runs on an event loop of its own in a background thread, so the gateway
under test (TestClient or a real uvicorn) talks to it over real HTTP."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from inference.engine_headers import PRECISION_HEADER

PRECISION = {"precision": "float32", "reason": "stand-in engine", "device": "cpu"}


@dataclass
class Script:
    #: Cancer probability to answer: a number, or a function of the paper's part of the
    #: prompt (from its title on: the instruction names cancers too, as a model reads it).
    cancer_probability: float | Callable[[str], float] = 0.9
    #: Answer completions with this status instead (None: answer normally) ...
    fail_status: int | None = None
    #: ... for the first `fail_times` completions only (None: all of them).
    fail_times: int | None = None
    #: Prompts containing this text fail with `fail_status` (per-item failures in a batch).
    fail_when: str | None = None
    #: Seconds before answering a completion (slow engine; beyond the gateway's timeout: 504);
    #: lowering it releases the calls already waiting.
    delay_s: float = 0.0
    #: A 200 whose body is not a completion.
    malformed: bool = False
    health_status: int = 200
    #: Seconds before answering a health probe.
    health_delay_s: float = 0.0
    served_model: str = "paper-classifier"
    precision: dict | None = field(default_factory=lambda: dict(PRECISION))


class Loop:
    """An event loop in a daemon thread (one per test session)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class StandInEngine:
    def __init__(self, loop: Loop, label_token_ids: dict[str, int]) -> None:
        self.loop, self.label_ids = loop, label_token_ids
        self.script = Script()
        self.bodies: list[dict] = []  # every completion request received, in order
        self.active = 0  # completions being answered now
        self.aborted = 0  # completions whose client went away before the answer
        self.health_calls = 0
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        # handler_cancellation: a handler is cancelled when its client disconnects, as vLLM
        # aborts a request whose connection closes.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        self.port = loop.run(self._start())

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.loop.run(self._runner.cleanup())

    def _headers(self) -> dict[str, str]:
        precision = self.script.precision
        return {PRECISION_HEADER: orjson.dumps(precision).decode()} if precision else {}

    async def _health(self, _: web.Request) -> web.Response:
        self.health_calls += 1  # on the stand-in's own loop: no lock needed
        await asyncio.sleep(self.script.health_delay_s)
        return web.Response(status=self.script.health_status, headers=self._headers())

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.script.served_model}]},
                                 headers=self._headers())

    def logprobs(self, cancer: float) -> dict[str, float]:
        top = {}
        for label, p in (("cancer", cancer), ("non_cancer", 1.0 - cancer)):
            if p > 0:
                top[f"token_id:{self.label_ids[label]}"] = math.log(p)
        return top

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        script = self.script
        with self._lock:
            self.bodies.append(body)
            n = len(self.bodies)
            self.active += 1
        try:
            started = asyncio.get_running_loop().time()
            # Setting script.delay_s to 0 lets a held call go at once.
            while asyncio.get_running_loop().time() - started < script.delay_s:
                await asyncio.sleep(0.01)
            fails = script.fail_status is not None and (
                (script.fail_times is None or n <= script.fail_times)
                and (script.fail_when is None or script.fail_when in body["prompt"]))
            if fails:
                return web.json_response({"error": "stand-in failure"},
                                         status=script.fail_status, headers=self._headers())
            if script.malformed:
                return web.json_response({"choices": []}, headers=self._headers())
            p = script.cancer_probability
            cancer = p(body["prompt"].split("\nTitle:", 1)[-1]) if callable(p) else p
            choice = {"index": 0, "text": "", "logprobs": {
                "tokens": [f"token_id:{self.label_ids['cancer']}"],
                "top_logprobs": [self.logprobs(cancer)]}}
            return web.json_response({"id": f"cmpl-{n}", "object": "text_completion",
                                      "model": body.get("model"), "choices": [choice]},
                                     headers=self._headers())
        except asyncio.CancelledError:
            with self._lock:
                self.aborted += 1
            raise
        finally:
            with self._lock:
                self.active -= 1
