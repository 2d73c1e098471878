"""A benchmark path in a fresh child process, so that its memory, threads and engine are gone
before the next path starts."""

from __future__ import annotations

import os
import queue
import traceback
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception_type

#: How often the parent looks whether the child died without an answer, seconds.
POLL_S = 5.0


def _child_main(results: Any, fn: Callable[..., dict], args: tuple) -> None:
    os.setsid()  # a process group of its own: whatever it starts can be stopped with it
    try:
        results.put(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        results.put(("error", traceback.format_exc()))


def _answer(results: Any, process: BaseProcess, name: str) -> tuple[str, Any]:
    """The child's ("ok", value) or ("error", traceback), waiting as long as it lives."""
    waiting = Retrying(retry=retry_if_exception_type(queue.Empty),
                       stop=lambda _: not process.is_alive())
    try:
        return waiting(results.get, timeout=POLL_S)
    except RetryError:
        raise RuntimeError(f"{name} died with exit code {process.exitcode}") from None


def run_in_child(fn: Callable[..., dict], *args: Any) -> dict:
    """`fn(*args)` in a fresh (spawned) process; it and everything it started are stopped once
    the result is in. `fn` must be importable by name and `args` picklable. Raises
    RuntimeError with the child's traceback when `fn` raised, or when the child died."""
    from inference.local import stop_process

    context = get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_child_main, args=(results, fn, args))
    process.start()
    try:
        status, value = _answer(results, process, fn.__name__)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            stop_process(process.pid)
        process.join(timeout=5)
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed:\n{value}")
    return value
