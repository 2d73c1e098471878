"""One pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): request id,
body-size limit, in-flight gauge, request metrics, an access log line, a problem document for
any fault that escapes the app, and cancellation of the request when its client goes away."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.gateway.logs import request_id_var
from inference.gateway.metrics import GatewayMetrics
from inference.gateway.problems import INTERNAL_DETAIL, PROBLEM_MEDIA_TYPE, problem_body

log = logging.getLogger("gateway.access")
errors_log = logging.getLogger("gateway.errors")

#: Recorded (metrics, log) for a request whose client left before its answer (nginx's code).
CLIENT_CLOSED = 499


class _BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it through as a 413 (it turns other
    errors raised while reading the body into 400s)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


async def _send_problem(send: Send, status: int, detail: str, headers: list) -> None:
    raw = problem_body(status, detail)
    await send({"type": "http.response.start", "status": status, "headers": headers + [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        id_header = [(b"x-request-id", request_id.encode("latin-1"))]
        status, started, seen = 500, time.perf_counter(), 0
        response_started = responded = False
        self.metrics.in_flight.inc()

        # Client disconnect -> cancel this request's task, and with it every engine call it has
        # in flight (aiohttp closes their connections; vLLM aborts a request whose connection
        # closes). Once the app has read the whole body, the server's receive() returns only
        # when the client disconnects or the response is complete, so a watcher awaits it; the
        # app's own later receive() calls wait on the watcher instead of racing it.
        task = asyncio.current_task()
        gone = asyncio.Event()
        watcher: asyncio.Task | None = None
        cancelled_here = False

        async def watch() -> None:
            nonlocal cancelled_here
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                if not responded and task is not None:
                    cancelled_here = True
                    task.cancel()

        async def watched_receive() -> Message:
            nonlocal seen, watcher
            if watcher is not None:
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise _BodyTooLarge(self.max_body)
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started, responded
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = list(message.get("headers", [])) + id_header
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                responded = True  # before the send: completing it wakes the watcher
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
            if declared > self.max_body:
                raise _BodyTooLarge(self.max_body)
            await self.app(scope, watched_receive, send_with_id)
        except _BodyTooLarge as err:
            status = 413
            await _send_problem(send, 413, err.detail, id_header)
        except asyncio.CancelledError:
            if not cancelled_here:
                raise  # the server is shutting down: not ours to swallow
            task.uncancel()  # type: ignore[union-attr]
            status = CLIENT_CLOSED
        except Exception:
            errors_log.exception("unhandled error")
            if response_started:
                raise
            status = 500
            await _send_problem(send, 500, INTERNAL_DETAIL, id_header)
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(elapsed)
            log.info("request", extra={"method": scope["method"], "route": route,
                                       "status": status, "ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)
