"""Optional API keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time.
One router-level dependency of the classification and admin routers; the open router (health,
readiness, metrics) never asks, so probes and scrapes work before secrets are mounted."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from inference.gateway.deps import StateDep


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


async def require_api_key(request: Request, state: StateDep) -> None:
    if state.api_keys and not key_is_valid(presented_key(request), state.api_keys):
        raise HTTPException(401, "missing or invalid API key",
                            headers={"WWW-Authenticate": "Bearer"})
