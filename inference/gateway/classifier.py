"""The classification service: render the prompt, look up the cache, call one engine under
backpressure with retries on failed connections, turn label log-probabilities into an answer."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import aiohttp
import orjson
from cachetools import LRUCache
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from inference.gateway.engines import Engine, EnginePool, NoEngineAvailable
from inference.gateway.metrics import GatewayMetrics
from inference.gateway.settings import GatewaySettings
from model_contract.prompts import PromptRenderer, collapse_whitespace
from model_contract.reading import (
    LabelScore,
    ReadingRule,
    read_paper,
    sampling_params,
    score_from_logprobs,
)

JSON_HEADERS = {"Content-Type": "application/json"}


def completion_params(renderer: PromptRenderer) -> dict:
    """What the gateway asks of vLLM's /v1/completions besides model and prompt: one label
    token's log-probabilities, with token ids rather than strings."""
    return sampling_params(renderer) | {"return_tokens_as_token_ids": True}


def completion_body(model: str, prompt: str, params: dict) -> bytes:
    return orjson.dumps({"model": model, "prompt": prompt, **params})


class ServiceError(Exception):
    """A failure the client should see as `status` with `detail` (and maybe Retry-After)."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


class _EngineLost(Exception):
    """The engine failed to answer (connection refused or dropped, or a 5xx): safe to retry,
    classification is idempotent."""


@dataclass(frozen=True, slots=True)  # slots: ~10,000 of them live in the result cache
class Answer:
    label: str
    probability: float
    cancer_probability: float
    truncated: bool
    reread: bool = False


@dataclass(frozen=True)
class ModelInfo:
    name: str  # served model name in vLLM
    version: str
    prompt_version: str
    manifest: dict
    rule: ReadingRule = ReadingRule()  # the manifest's calibration, settings' override


class Classifier:
    def __init__(
        self,
        settings: GatewaySettings,
        pool: EnginePool,
        renderer: PromptRenderer,
        metrics: GatewayMetrics,
        model: ModelInfo,
    ) -> None:
        self.settings, self.pool, self.renderer = settings, pool, renderer
        self.metrics, self.model = metrics, model
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._cache: LRUCache[bytes, Answer] = LRUCache(maxsize=max(settings.cache_size, 1))
        self._reread = renderer.reread_renderer()
        self._params = completion_params(renderer)
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)

    def _cache_key(self, title: str, abstract: str) -> bytes:
        # The text as the model sees it: a case-folded key would hand "ALL relapse" (acute
        # lymphoblastic leukaemia) the answer read for "all relapse".
        raw = "\x1f".join([collapse_whitespace(title), collapse_whitespace(abstract),
                           self.model.version, self.model.prompt_version])
        return hashlib.sha256(raw.encode()).digest()  # 32 bytes, half the hex string's size

    async def classify(self, title: str, abstract: str) -> Answer:
        key = self._cache_key(title, abstract)
        if self.settings.cache_size and (hit := self._cache.get(key)) is not None:
            self.metrics.cache_requests.labels("hit").inc()
            return hit
        self.metrics.cache_requests.labels("miss").inc()
        answer = await self._read(title, abstract)
        if self.settings.cache_size:
            self._cache[key] = answer
        self.metrics.predictions.labels(answer.label).inc()
        self.metrics.cancer_probability.observe(answer.cancer_probability)
        return answer

    async def _read(self, title: str, abstract: str) -> Answer:
        score, truncated, reread = await read_paper(
            self.renderer, self._reread, title, abstract, self.model.rule.reread_below,
            self._score)
        if reread:
            self.metrics.rereads.inc()
        return Answer(score.label, score.probability, score.cancer_probability, truncated,
                      reread)

    async def _score(self, renderer: PromptRenderer, prompt: str) -> LabelScore:
        logprobs = await self._call_engine(prompt)
        try:
            return score_from_logprobs(renderer, logprobs, self.model.rule.temperature)
        except ValueError as err:  # no label token among them: the engine's fault, not ours
            raise ServiceError(502, f"unexpected engine response: {err}") from None

    async def _call_engine(self, prompt: str) -> dict[int, float]:
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.settings.queue_wait_s)
        except TimeoutError:
            self.metrics.engine_errors.labels("overload").inc()
            raise ServiceError(429, "too many requests in flight; retry later",
                               self.settings.retry_after_s) from None
        failed: set[str] = set()
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_EngineLost),
                stop=stop_after_attempt(self.settings.connect_retries + 1),
                wait=wait_exponential(multiplier=0.05, max=0.5),
                reraise=True,
            ):
                with attempt:
                    engine = self.pool.pick(avoid=frozenset(failed))
                    try:
                        return await self._post(engine, prompt)
                    except _EngineLost:
                        failed.add(engine.url)
                        raise
        except NoEngineAvailable:
            raise ServiceError(503, "no inference engine is available; retry later",
                               self.settings.retry_after_s) from None
        except _EngineLost as err:
            raise ServiceError(503, f"inference engine unavailable: {err}",
                               self.settings.retry_after_s) from None
        finally:
            self._slots.release()
        raise AssertionError("unreachable")

    async def _post(self, engine: Engine, prompt: str) -> dict[int, float]:
        body = completion_body(self.model.name, prompt, self._params)
        engine.in_flight += 1
        started = time.perf_counter()
        try:
            async with self.pool.session.post(f"{engine.url}/v1/completions", data=body,
                                              headers=JSON_HEADERS,
                                              timeout=self._timeout) as response:
                status, raw = response.status, await response.read()
        except TimeoutError:  # aiohttp's timeouts (connect included) are TimeoutErrors
            self.metrics.engine_errors.labels("timeout").inc()
            # Transient as a 503 is (a frozen or swamped engine): say when to try again.
            raise ServiceError(504, "inference engine timed out; retry later",
                               self.settings.retry_after_s) from None
        except aiohttp.ClientError as err:  # refused, reset, disconnected mid-answer
            self.metrics.engine_errors.labels("connect").inc()
            self.pool.mark_failed(engine, type(err).__name__)
            raise _EngineLost(type(err).__name__) from None
        finally:
            engine.in_flight -= 1
            self.metrics.engine_duration.observe(time.perf_counter() - started)
        if status >= 500:
            # A 5xx is the engine's own fault (shutting down, engine loop dead): retry, then 503
            # with Retry-After, as for a lost connection. The health probe decides if it is down.
            self.metrics.engine_errors.labels("http").inc()
            raise _EngineLost(f"engine answered {status}")
        if status != 200:
            # A 4xx means the gateway sent something the engine refuses: our bug, not the client's.
            self.metrics.engine_errors.labels("http").inc()
            raise ServiceError(502, f"inference engine answered {status}")
        return _label_logprobs(raw)


def _label_logprobs(raw: bytes) -> dict[int, float]:
    """`{"token_id:10407": -0.6, ...}` (return_tokens_as_token_ids) -> {10407: -0.6, ...}."""
    try:
        top = orjson.loads(raw)["choices"][0]["logprobs"]["top_logprobs"][0]
        return {int(token.rsplit(":", 1)[1]): float(lp) for token, lp in top.items()}
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ServiceError(502, f"unexpected engine response: {err!r}") from None

