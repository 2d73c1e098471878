"""HTTP clients of the served paths for one benchmark run: the engine called directly (doing
the gateway's work itself) and the gateway."""

from __future__ import annotations

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_fixed

from loadtest.checks import BadResponse, check_classification
from model_contract.prompts import PromptRenderer
from model_contract.reading import LabelScore, ReadingRule, read_paper
from preprocessing.papers import Paper

#: The engine refuses to empty its prefix cache while blocks are still held: tries, and
#: seconds between them.
RESET_TRIES, RESET_WAIT_S = 50, 0.1
#: Total time limit of one request on either path, seconds.
REQUEST_TIMEOUT_S = 120


class Served:
    """Clients of the engine (direct) and of the gateway; an async context manager that holds
    one HTTP session for both."""

    def __init__(self, engine_url: str, gateway_url: str, renderer: PromptRenderer,
                 model_name: str, concurrency: int, rule: ReadingRule) -> None:
        from inference.gateway.classifier import (
            JSON_HEADERS,
            _label_logprobs,
            completion_body,
            completion_params,
        )
        from model_contract.reading import score_from_logprobs

        self.engine_url, self.gateway_url, self.renderer = engine_url, gateway_url, renderer
        # The direct client does the gateway's work too (a second, longer read when the first
        # is unsure), so the overhead compares like with like.
        self.reread, self.rule = renderer.reread_renderer(), rule
        self.concurrency = concurrency
        # The body the gateway sends (inference/gateway/classifier.py).
        self.params = completion_params(renderer)
        self.model_name = model_name
        self._logprobs, self._score = _label_logprobs, score_from_logprobs
        self._body, self._headers = completion_body, JSON_HEADERS
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Served:
        # The HTTP library the gateway uses for its engine calls, for both paths: the overhead
        # then measures the hop, not a difference between client libraries.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency + 4),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()

    async def _post(self, url: str, body: bytes) -> tuple[int, bytes]:
        async with self.session.post(url, data=body, headers=self._headers) as response:
            return response.status, await response.read()

    async def _complete(self, renderer: PromptRenderer, prompt: str) -> LabelScore:
        status, raw = await self._post(f"{self.engine_url}/v1/completions",
                                       self._body(self.model_name, prompt, self.params))
        if status != 200:
            raise BadResponse(f"engine HTTP {status}: {raw[:200]!r}")
        return self._score(renderer, self._logprobs(raw), self.rule.temperature)

    async def direct(self, paper: Paper) -> tuple[str, bool]:
        """The label, and whether the paper was read twice."""
        score, _, reread = await read_paper(self.renderer, self.reread, paper.title,
                                            paper.abstract, self.rule.reread_below, self._complete)
        return score.label, reread

    async def gateway(self, paper: Paper) -> tuple[str, bool]:
        """The label the gateway answered (checked against the contract), and whether it read
        the paper twice."""
        status, raw = await self._post(
            f"{self.gateway_url}/v1/classify_paper",
            orjson.dumps({"id": paper.id, "title": paper.title, "abstract": paper.abstract}))
        if status != 200:
            raise BadResponse(f"HTTP {status}: {raw[:200]!r}")
        body = orjson.loads(raw)
        return check_classification(body, paper.id), body["reread"]

    def prompt_tokens(self, paper: Paper, reread: bool) -> int:
        """Tokens the engine read for this paper: both reads when there were two."""
        renderers = [self.renderer] + ([self.reread] if reread and self.reread else [])
        return sum(r.count_tokens(r.render(paper.title, paper.abstract).text) for r in renderers)

    async def _try_reset(self) -> bool | None:
        """True: the prefix cache is empty; False: the engine refuses; None: not yet."""
        try:
            status, raw = await self._post(f"{self.engine_url}/reset_prefix_cache", b"{}")
            if status != 200:
                return False
            return True if orjson.loads(raw).get("success", False) else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

    async def reset_prefix_cache(self) -> bool:
        """Empty the engine's prefix cache (vLLM's dev-mode endpoint) so that a timed round
        finds no prompt of an earlier round cached; False when the engine refuses, or still
        holds blocks after RESET_TRIES tries RESET_WAIT_S seconds apart."""
        retrying = AsyncRetrying(retry=retry_if_result(lambda done: done is None),
                                 stop=stop_after_attempt(RESET_TRIES),
                                 wait=wait_fixed(RESET_WAIT_S),
                                 retry_error_callback=lambda _: False)
        return await retrying(self._try_reset)

    async def _samples(self, url: str) -> list:
        """Every sample (prometheus_client's `Sample`: name, labels, value) of `url`/metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        async with self.session.get(f"{url}/metrics") as response:
            text = await response.text()
        return [sample for family in text_string_to_metric_families(text)
                for sample in family.samples]

    async def prefix_cache_hits(self) -> float | None:
        """Prompt tokens the engine has found in its prefix cache since it started (vLLM's
        `vllm:prefix_cache_hits` counter, summed over its engines): tokens it did not compute.
        None when the engine's /metrics cannot be read or lacks the counter."""
        try:
            samples = await self._samples(self.engine_url)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        hits = [s.value for s in samples if s.name == "vllm:prefix_cache_hits_total"]
        return sum(hits) if hits else None

    async def gateway_time_sums(self) -> tuple[float, float, float, float]:
        """From the gateway's own metrics: seconds and count of /v1/classify_paper requests,
        and of the engine calls made for them."""
        values = {s.name: s.value for s in await self._samples(self.gateway_url)
                  if s.labels.get("route", "/v1/classify_paper") == "/v1/classify_paper"}
        return (values.get("classifier_request_duration_seconds_sum", 0.0),
                values.get("classifier_request_duration_seconds_count", 0.0),
                values.get("classifier_engine_duration_seconds_sum", 0.0),
                values.get("classifier_engine_duration_seconds_count", 0.0))
