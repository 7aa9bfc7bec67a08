"""Issue 5 benchmarks: hf backend vs a naive one-prompt-at-a-time generate loop (same 64 seeds, same
run), and the cost of an incremental run with 10 % new clips as a fraction of a full run."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from components.config import ModelsConfig, load_profile
from components.label.backends.hf import HFBackend
from components.label.cache import CACHE_FILE
from components.label.choices import SUFFIX
from components.label.run import label
from components.label.template import generator_messages
from components.label.units import plan_units, prepare_job
from tests.components.label.helpers import seed_file, seed_rows

pytestmark = pytest.mark.bench
REAL_SEEDS = Path(__file__).resolve().parents[2] / "data" / "seeds"


class HostLoad:
    """Share of the host's cores busy with *other* processes while a benchmark ran (a shared box
    skews absolute figures; two spinning OpenMP threads suffer most when a neighbour takes a core)."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        ours = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))
        return busy, ours, time.monotonic()

    def others(self) -> float:
        busy, ours, wall = (b - a for a, b in zip(self.start, self._sample()))
        return round(max(0.0, busy - ours) / (wall * (os.cpu_count() or 1)), 3)


def _seeds(n: int) -> tuple[list[dict], str]:
    """The real seeds stage output when there is one (train split), else made-up seed rows."""
    from components.records import read_seeds

    if (REAL_SEEDS / "shards").is_dir():
        rows = [r for r in read_seeds(REAL_SEEDS) if r.get("split", "train") == "train"]
        if len(rows) >= 64:
            return rows[:n], "data/seeds"
    return seed_rows(n), "synthetic"


def _naive(model_dir: Path, prompts: list[list[dict]], max_new: int, autocast: bool) -> tuple[float, int]:
    """What one would write first: fp32 model, one prompt per generate() call."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokens = 0
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for msgs in prompts:
            enc = tok(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                      return_tensors="pt", add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
            tokens += out.shape[1] - enc["input_ids"].shape[1]
    return time.perf_counter() - t0, tokens


@pytest.mark.timeout(5400)
def test_hf_backend_vs_naive_loop(tmp_path: Path, repo: Path, embedded_models: dict[str, Path], record) -> None:
    prof = load_profile(repo / "params.yaml")
    llm = embedded_models["smollm2-135m-instruct"]
    models = ModelsConfig(whisper="unused", llm=str(llm))
    cfg = prof.label.model_copy(update={"max_retries": 0})  # one generation per prompt on both sides
    seeds, source = _seeds(64)
    load = HostLoad()
    backend = HFBackend(llm, precision=cfg.precision, threads=cfg.threads)  # loaded outside the timed region
    stats = label(seed_file(tmp_path, seeds), tmp_path / "hf", cfg, models, backend=backend, show_progress=False)
    job = prepare_job(tmp_path / "hf", cfg, models)
    prompts = [list(generator_messages(it.seed["seed_description"], it.instruction.text))
               for u in plan_units(seed_file(tmp_path, seeds), job) for it in job.items(u)]
    naive_s, naive_tok = _naive(llm, prompts, cfg.max_new_tokens, autocast=False)
    naive_bf16_s, naive_bf16_tok = _naive(llm, prompts, cfg.max_new_tokens, autocast=True)
    hf_s = stats["generate_seconds"]
    figures = {
        "seeds": len(seeds), "seed_source": source, "batch_size": cfg.batch_size,
        "max_new_tokens": cfg.max_new_tokens, "precision": cfg.precision, "threads": torch.get_num_threads(),
        "hf_batched": {"seconds": round(hf_s, 1), "rows_per_s": round(len(prompts) / hf_s, 2),
                       "tokens_per_s": round(stats["completion_tokens"] / hf_s, 1)},
        "naive_fp32_loop": {"seconds": round(naive_s, 1), "rows_per_s": round(len(prompts) / naive_s, 3),
                            "tokens_per_s": round(naive_tok / naive_s, 1)},
        "naive_bf16_loop": {"seconds": round(naive_bf16_s, 1), "rows_per_s": round(len(prompts) / naive_bf16_s, 3),
                            "tokens_per_s": round(naive_bf16_tok / naive_bf16_s, 1)},
        "speedup_vs_naive_fp32": round(naive_s / hf_s, 2),
        "speedup_vs_naive_bf16_batching_only": round(naive_bf16_s / hf_s, 2),
    }
    figures["host_cores_busy_with_other_processes"] = load.others()
    record("label_throughput", figures)
    assert figures["speedup_vs_naive_fp32"] >= 4


def _forget(cache_dir: Path, job, units, clip_ids: set[str]) -> int:
    """Drop every cached response (all attempts) of these clips: the cache as if they were never labelled."""
    keys = [job.request(it, a).key for u in units for it in job.items(u) if it.seed["id"] in clip_ids
            for a in range(job.cfg.max_retries + 1)]
    with sqlite3.connect(cache_dir / CACHE_FILE) as con:
        con.executemany("DELETE FROM responses WHERE key = ?", [(k,) for k in keys])
        return con.total_changes


@pytest.mark.timeout(5400)
def test_incremental_run_cost(tmp_path: Path, repo: Path, embedded_models: dict[str, Path], record) -> None:
    prof = load_profile(repo / "params.yaml")
    models = ModelsConfig(whisper="unused", llm=str(embedded_models["smollm2-135m-instruct"]))
    cfg = prof.label
    seeds, source = _seeds(640)
    load = HostLoad()
    n_new = round(len(seeds) / 11)  # old + 10 % of old = all
    full = label(seed_file(tmp_path, seeds), tmp_path / "full", cfg, models, show_progress=False)  # from scratch, model load included

    # The state "labelled before the 10 % arrived": the full cache minus the new clips' responses.
    shutil.copytree(tmp_path / "full" / "cache", tmp_path / "inc" / "cache")
    job = prepare_job(tmp_path / "inc", cfg, models)
    dropped = _forget(tmp_path / "inc" / "cache", job, plan_units(seed_file(tmp_path, seeds), job), {s["id"] for s in seeds[-n_new:]})
    inc = label(seed_file(tmp_path, seeds), tmp_path / "inc", cfg, models, show_progress=False)
    # Rows of old clips must be identical (cache hits). New clips' rows may differ from the full
    # run's: bf16 batched decoding depends on the batch a prompt lands in (re-runs of the same
    # input are byte-identical; tests/components/label).
    def rows(d: Path) -> dict[str, str]:
        return {json.loads(x)["id"]: x for f in sorted((d / "shards").glob("label-*.jsonl")) for x in f.read_text().splitlines()}

    full_rows, inc_rows = rows(tmp_path / "full"), rows(tmp_path / "inc")
    new_ids = {s["id"] for s in seeds[-n_new:]}
    def clip(row_id: str) -> str:
        return row_id.removesuffix(SUFFIX).rsplit("-", 1)[0]

    old_diff = sum(inc_rows.get(k) != v for k, v in full_rows.items() if clip(k) not in new_ids)
    new_diff = sum(inc_rows.get(k) != v for k, v in full_rows.items() if clip(k) in new_ids)
    figures = {
        "clips": len(seeds), "new_clips": n_new, "seed_source": source, "cache_entries_dropped": dropped,
        "full": {k: full[k] for k in ("wall_seconds", "generated", "generated_by_attempt", "rows_written",
                                      "quarantined", "rows_per_s", "tokens_per_s", "filtered_by_reason")},
        "incremental": {k: inc[k] for k in ("wall_seconds", "generated", "generated_by_attempt", "cache_hits")},
        "incremental_fraction_of_full": round(inc["wall_seconds"] / full["wall_seconds"], 3),
        "old_clip_rows_differing": old_diff,
        "new_clip_rows_differing_from_full_run": new_diff,
    }
    figures["host_cores_busy_with_other_processes"] = load.others()
    record("label_incremental", figures)
    assert old_diff == 0
    assert figures["incremental_fraction_of_full"] <= 0.15
