"""The `openai` backend against a real server process on loopback, with one injected failure."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from components.config import ModelsConfig
from components.label.backends.openai_http import EndpointError, OpenAIBackend
from components.label.backends import Request
from components.label.run import label
from tests.components.label.helpers import label_cfg, read_rows, seed_file, seed_rows
from tests.flows.workspace import refused_port

SERVER = Path(__file__).with_name("openai_server.py")


@pytest.fixture()
def server(llm_dir: Path, repo: Path):
    """The embedded model behind a small OpenAI-compatible server whose first chat request answers 500."""
    with socket.socket() as sock:  # bound and listening before the server starts: no port to lose to a race
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        proc = subprocess.Popen([sys.executable, str(SERVER), "--model", str(llm_dir), "--fd", str(sock.fileno()),
                                 "--fail-first", "1", "--threads", "1"], cwd=repo, pass_fds=(sock.fileno(),),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not come up"
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_openai_backend_retries_an_injected_failure(server: str, tmp_path: Path, models: ModelsConfig) -> None:
    seeds = seed_rows(4)
    cfg = label_cfg(backend="openai", openai_base_url=f"{server}/v1", concurrency=2, max_retries=0,
                    request_timeout=60)
    stats = label(seed_file(tmp_path, seeds), tmp_path / "out", cfg, models, show_progress=False)
    served = httpx.get(f"{server}/stats").json()
    assert served == {"requests": 5, "failed": 1}  # 4 prompts + 1 retry of the one that got a 500
    assert stats["backend_stats"] == {"http_requests": 5, "http_retries": 1}
    assert stats["engine"] == "openai" and stats["generated"] == 4
    assert stats["rows_written"] + stats["quarantined"] == 4
    for row in read_rows(tmp_path / "out"):
        assert row["messages"][1]["content"].startswith("<|AUDIO|>\n")
    again = label(seed_file(tmp_path, seeds), tmp_path / "out", cfg, models, show_progress=False)  # cached: no request at all
    assert again["generated"] == 0 and httpx.get(f"{server}/stats").json()["requests"] == 5


def test_openai_backend_gives_up_clearly(tmp_path: Path) -> None:
    with refused_port() as port:  # nothing listens: connection refused, retried, then an error
        backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", concurrency=1, timeout=2, max_attempts=2,
                                backoff=0.01)
        with pytest.raises(EndpointError, match="ConnectError"):
            backend.generate([Request("k", ({"role": "user", "content": "hi"},), 4)])
    assert backend.stats == {"http_requests": 2, "http_retries": 1}
