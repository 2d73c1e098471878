"""An ASGI middleware that vLLM's OpenAI server loads (`--middleware`): every response carries
the compute precision the launcher chose, so the gateway can say what its engines run in
without importing torch or asking the engine's machine."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

#: The launcher passes the choice (JSON of hardware.precision.PrecisionChoice) to vLLM here.
PRECISION_ENV = "PAPER_CLASSIFIER_PRECISION"
#: The response header that carries it (the same JSON).
PRECISION_HEADER = "x-paper-classifier-precision"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


class PrecisionHeader:
    """Adds `x-paper-classifier-precision` to every HTTP response (nothing when the launcher
    set no choice)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        value = os.environ.get(PRECISION_ENV, "")
        self.header = (PRECISION_HEADER.encode(), value.encode("ascii", "replace"))
        self.enabled = bool(value)

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)
