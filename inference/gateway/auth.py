"""Optional API keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

# Reachable without a key: probes and scrapes must work before secrets are mounted.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def key_is_valid(key: str | None, accepted: list[str]) -> bool:
    if key is None:
        return False
    # Check every key (no early exit), so timing says nothing about which one nearly matched.
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in accepted]
    return any(matches)


async def require_api_key(request: Request) -> None:
    accepted: list[str] = request.app.state.api_keys
    if accepted and not key_is_valid(presented_key(request), accepted):
        raise HTTPException(401, "missing or invalid API key",
                            headers={"WWW-Authenticate": "Bearer"})
