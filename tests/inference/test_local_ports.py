"""Local serving picks loopback ports that a server can bind."""

from __future__ import annotations

import socket

import pytest

from inference.local import free_port


def test_a_bound_port_is_skipped_even_when_nothing_listens() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # bound, not listening: a connect test would call it free
        port = held.getsockname()[1]
        chosen = free_port(port)
        assert chosen > port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", chosen))  # and the port it names can be bound


def test_no_free_port_in_the_range_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: tuple[str, int]) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    with pytest.raises(RuntimeError, match="no free port from 9000"):
        free_port(9000)


def test_a_port_promised_to_a_server_not_yet_listening_is_skipped() -> None:
    first = free_port(9100)
    assert free_port(9100, exclude={first}) > first
