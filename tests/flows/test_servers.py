"""The test servers' port handling, with a real server and a real port taken by another socket."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from components.stack import procs
from tests.flows import servers
from tests.flows.workspace import refused_port


def _http_server(tmp_path: Path, log: Path):
    def start(port: int):
        return procs.spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], {}, log, cwd=tmp_path)
    return start


def test_a_port_taken_before_the_server_binds_it_is_picked_again(tmp_path: Path, monkeypatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()  # another process got there first
    picks = [taken.getsockname()[1]]
    real = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda: picks.pop(0) if picks else real())
    log = tmp_path / "http.log"
    try:
        with servers.on_free_port(_http_server(tmp_path, log), lambda p: f"http://127.0.0.1:{p}/", log) as (port, _):
            assert port != taken.getsockname()[1]
            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200
        assert log.read_text().count("Address already in use") == 1  # the first start lost the race, said so
    finally:
        taken.close()


def test_a_server_that_fails_for_another_reason_is_not_retried(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"

    def start(port: int):
        return procs.spawn([sys.executable, "-c", "raise SystemExit('broken config')"], {}, log, cwd=tmp_path)

    with pytest.raises(RuntimeError, match="broken config") as err:
        with servers.on_free_port(start, lambda p: f"http://127.0.0.1:{p}/", log):
            pass
    assert not isinstance(err.value, servers.PortTaken) and log.read_text().count("\n=== ") == 1  # started once


def test_a_refused_port_refuses_and_stays_held() -> None:
    with refused_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # nobody else can start listening there meanwhile
