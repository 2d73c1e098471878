"""One pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): request id,
body-size limit, in-flight gauge, request metrics and an access log line."""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.gateway.logs import request_id_var
from inference.gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.access")


class _BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it through as a 413 (it turns other
    errors raised while reading the body into 400s)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


async def _send_json(send: Send, status: int, body: dict, headers: list) -> None:
    raw = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status, "headers": headers + [
        (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
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
        self.metrics.in_flight.inc()

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise _BodyTooLarge(self.max_body)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + id_header
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
            if declared > self.max_body:
                raise _BodyTooLarge(self.max_body)
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge as err:
            status = 413
            await _send_json(send, 413, {"detail": err.detail}, id_header)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(elapsed)
            log.info("request", extra={"method": scope["method"], "route": route,
                                       "status": status, "ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)
