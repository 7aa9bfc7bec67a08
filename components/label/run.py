"""`desta label`: the generator LLM answers `seed description + instruction`; rows in DeSTA-AQA5M format.

Work is split into units (one output shard each, components/label/units.py) that share nothing but the
response cache, so a Prefect task runner can fan them out: `prepare_job` -> `plan_units` -> `run_unit`
(any order, any worker) -> `finalize`. `label()` is the one driver: it runs them in-process, or with
the `map_units` a flow passes (flows/label.py).

Resume after `kill -9`: a unit's shard is written with one atomic rename; generated responses are
committed to the cache one whole batch at a time. Batches are planned over the requests still
missing, sorted by (length, shared opening, key) and cut every `batch_size`: after a kill the missing set
is a union of whole planned batches, so the re-run plans exactly those batches again and gets
the same numerics, hence the same text, as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.atomic import atomic_write_text, clear_temps
from components.config import LabelConfig, ModelsConfig
from components.label import filters, template
from components.label.attributes import SAID_KIND, seed_value, stated_values
from components.label.backends import Backend, Request
from components.label.cache import Cached, ResponseCache
from components.label.choices import choice_copy, said_choice, stated_rows
from components.label.pool import DEFAULT_POOL
from components.label.rows import aqa_row, dumps_rows, model_text
from components.label.units import (SEED_FIELDS, LabelJob, Unit, UnitResult, plan_batches, plan_units, prepare_job,
                                    process_name)
from components.progress import progress_bar
from components.records import LABEL_PROVENANCE, LABEL_SHARD_DIR
from components.stage import one_writer

STAGE_VERSION = 1
SHARD_DIR = LABEL_SHARD_DIR
SHARD_GLOB = "label-*.jsonl"
QUARANTINE_DIR = "quarantine"
PROVENANCE = LABEL_PROVENANCE  # beside the shards, never in the rows; written last
STATS = "stats.json"

Progress = Callable[[int, int], None]  # (rows finished, tokens generated)


def _generate(job: LabelJob, cache: ResponseCache, requests: list[Request], result: UnitResult,
              on_progress: Progress | None, count_rows: Counter[str] | None) -> dict[str, Cached]:
    backend = job.backend()
    got: dict[str, Cached] = {}
    for batch in plan_batches(requests, backend.length, job.cfg.batch_size):
        t0 = time.perf_counter()
        comps = backend.generate(batch)
        result.generate_seconds += time.perf_counter() - t0
        entries = {r.key: Cached(c.text, c.finish, c.prompt_tokens, c.completion_tokens) for r, c in zip(batch, comps)}
        cache.put_many(entries, job.generator.digest)  # one transaction: the batch survives a kill whole or not at all
        got |= entries
        tokens = sum(c.completion_tokens for c in comps)
        result.generated += len(batch)
        result.prompt_tokens += sum(c.prompt_tokens for c in comps)
        result.completion_tokens += tokens
        if on_progress:
            on_progress(sum(count_rows[r.key] for r in batch) if count_rows is not None else 0, tokens)
    return got


def _asked_key(it: Any) -> str:
    asks = it.instruction.asks
    return asks if asks == SAID_KIND else f"{asks}={seed_value(it.seed['seed_description'], asks)}"


def run_unit(unit: Unit, job: LabelJob, on_progress: Progress | None = None) -> UnitResult:
    """Label one unit: cache lookups, generation of what is missing, filters and retries, then its shard."""
    cfg = job.cfg
    result = UnitResult(unit.name)
    cache = ResponseCache(job.cache_dir)
    accepted: dict[str, Cached] = {}
    history: dict[str, list[dict[str, str]]] = {}
    items = job.items(unit)
    pending = list(items)
    try:
        for attempt in range(cfg.max_retries + 1):
            if not pending:
                break
            reqs = {it.row_id: job.request(it, attempt) for it in pending}
            result.requests += len(reqs)
            hits = cache.get_many(r.key for r in reqs.values())
            result.cache_hits += sum(r.key in hits for r in reqs.values())
            missing = [r for r in reqs.values() if r.key not in hits]
            rows_per_key = Counter(r.key for r in missing) if attempt == 0 else None
            if on_progress and attempt == 0:
                on_progress(len(reqs) - len(missing), 0)
            got = _generate(job, cache, missing, result, on_progress, rows_per_key) if missing else {}
            result.generated_by_attempt.append(len({r.key for r in missing}))
            still = []
            for it in pending:
                c = hits.get(reqs[it.row_id].key) or got[reqs[it.row_id].key]
                text, reason, trimmed = filters.accept(c.response, c.finish, it.seed["seed_description"],
                                                       cfg.trim_truncated, cfg.focus, it.instruction.asks,
                                                       it.seed.get("transcript"))
                if reason is None:
                    accepted[it.row_id] = Cached(text, c.finish, c.prompt_tokens, c.completion_tokens)
                    result.trimmed += trimmed
                    continue
                result.filtered_by_reason[reason] = result.filtered_by_reason.get(reason, 0) + 1
                history.setdefault(it.row_id, []).append({"reason": reason, "response": c.response})
                still.append(it)
            pending = still
    finally:
        cache.close()
    rows = []
    transcripts = {it.seed["transcript"] for it in items if it.seed.get("transcript")}  # said: the distractors
    # label.choice_stated: a clip's kept answers also teach what they state unasked, once a clip and attribute
    covered: dict[str, set[str | None]] = defaultdict(set)
    for it in items:
        if it.row_id in accepted:
            covered[it.seed["id"]].add(it.instruction.requires)
    stated: Counter[str] = Counter()
    for it in items:
        if it.row_id not in accepted:
            continue
        response = accepted[it.row_id].response
        values = stated_values(response, it.seed["seed_description"])
        stated.update(values)
        rows.append(aqa_row(it.seed, it.index, it.instruction.text, response))
        extra = [] if not cfg.choice_rows else [choice_copy(it.seed, it.index, it.instruction.kind,
                                                            it.instruction.requires, response, transcripts)]
        if cfg.choice_rows and cfg.choice_stated:
            more = stated_rows(it.seed, it.index, response, values, covered[it.seed["id"]])
            covered[it.seed["id"]] |= set(more)
            extra += more.values()
        rows += [r for r in extra if r is not None]
        result.choice_rows += sum(r is not None for r in extra)
    if cfg.choice_rows and cfg.choice_said:  # one per clip, answered or not: no generation
        said = [r for seed in {it.seed["id"]: it.seed for it in items}.values()
                if (r := said_choice(seed, transcripts)) is not None]
        rows += said
        result.choice_rows += len(said)
    asked = Counter(_asked_key(it) for it in items if it.row_id in accepted and it.instruction.asks)
    result.rows_by_asked_value = dict(sorted(asked.items()))
    result.rows_by_stated_value = dict(sorted(stated.items()))
    quarantine = []
    for it in pending:
        reason = history[it.row_id][-1]["reason"]
        result.quarantined_by_reason[reason] = result.quarantined_by_reason.get(reason, 0) + 1
        quarantine.append({"id": it.row_id, "clip_id": it.seed["id"], "dataset": it.seed["dataset"],
                           "instruction_id": it.instruction.id, "prompt": it.instruction.text,
                           "reason": reason, "attempts": history[it.row_id]})
    atomic_write_text(job.out / QUARANTINE_DIR / f"{unit.name}.jsonl", dumps_rows(quarantine))
    atomic_write_text(job.out / SHARD_DIR / f"{unit.name}.jsonl", dumps_rows(rows))  # last: marks the unit done
    result.rows = len(rows)
    result.process, result.process_loads = process_name(), job.loads
    return result


def _seeds_digest(units: list[Unit]) -> str:
    """Of the labelled seed rows' fields that reach a label row, in order (each unit's rows read again)."""
    h = hashlib.sha256()
    for u in units:
        for seed in u.seeds():
            fields = [seed[f] for f in SEED_FIELDS[:5]] + [model_text(seed)]
            h.update(json.dumps(fields, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def provenance(job: LabelJob, units: list[Unit]) -> dict[str, Any]:
    """Where the rows came from; deterministic (no times), so equal inputs give equal bytes."""
    cfg = job.cfg
    shards = {}
    for u in units:
        data = (job.out / SHARD_DIR / f"{u.name}.jsonl").read_bytes()
        shards[f"{u.name}.jsonl"] = {"rows": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
    pool_path = Path(job.pool.path)
    return {
        "stage": "label",
        "version": STAGE_VERSION,
        "generator": job.generator.as_dict(),
        "backend": cfg.backend,
        "engine": job.engine,
        "pool": {"path": "builtin:" + DEFAULT_POOL.name if pool_path == DEFAULT_POOL else str(cfg.instructions),
                 "sha256": job.pool.digest, "instructions": len(job.pool.instructions),
                 "kinds": cfg.kinds},
        "template": template.describe(),
        "decoding": {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                     "retry_temperature": cfg.retry_temperature, "max_retries": cfg.max_retries,
                     "precision": cfg.precision, "trim_truncated": cfg.trim_truncated},
        "filters": {"focus": cfg.focus, "max_clips_per_speaker": cfg.max_clips_per_speaker,
                    "choice_rows": cfg.choice_rows, "choice_stated": cfg.choice_stated, "choice_said": cfg.choice_said},
        "seed": cfg.seed,
        "instructions_per_clip": cfg.instructions_per_clip,
        "more_draws": cfg.more_draws,
        "splits": cfg.splits,
        "seeds": {"clips": sum(u.clips for u in units), "sha256": _seeds_digest(units)},
        "shards": shards,
    }


def _clean(directory: Path, keep: set[str]) -> None:
    """Drop shards of units that no longer exist and temp files left by a killed run."""
    clear_temps(directory)
    for p in directory.glob(SHARD_GLOB) if directory.is_dir() else ():
        if p.name not in keep:
            p.unlink(missing_ok=True)


def finalize(job: LabelJob, units: list[Unit], results: list[UnitResult], wall_seconds: float) -> dict[str, Any]:
    """After every unit: stale shards go, provenance and stats are written; returns the stats."""
    keep = {f"{u.name}.jsonl" for u in units}
    _clean(job.out / SHARD_DIR, keep)
    _clean(job.out / QUARANTINE_DIR, keep)
    (job.out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_text(job.out / SHARD_DIR / PROVENANCE, json.dumps(provenance(job, units), indent=2) + "\n")
    stats = summarize(results, wall_seconds)
    skipped = job.skipped
    stats |= {"clips": sum(u.clips for u in units), "seed_rows": sum(u.clips for u in units) + sum(skipped.values()),
              "clips_skipped_by_split": skipped.get("split", 0),
              "clips_skipped_by_speaker_cap": skipped.get("speaker_cap", 0),
              "units": len(units), "backend": job.cfg.backend, "engine": job.engine,
              "backend_stats": job.backend_stats(), "generator": job.generator.name,
              "generator_digest": job.generator.digest, "self_generated": job.generator.self_generated}
    atomic_write_text(job.out / STATS, json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats


def summarize(results: list[UnitResult], wall_seconds: float) -> dict[str, Any]:
    """Totals over units: rows, cache hits, generated, filtered by reason, tokens, rates."""
    filt: Counter[str] = Counter()
    quar: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    stated: Counter[str] = Counter()
    by_attempt: list[int] = []
    for r in results:
        filt.update(r.filtered_by_reason)
        quar.update(r.quarantined_by_reason)
        asked.update(r.rows_by_asked_value)
        stated.update(r.rows_by_stated_value)
        for i, n in enumerate(r.generated_by_attempt):
            by_attempt += [0] * (i + 1 - len(by_attempt))
            by_attempt[i] += n
    loads: dict[str, int] = {}
    for r in results:
        loads[r.process] = max(loads.get(r.process, 0), r.process_loads)
    rows = sum(r.rows for r in results)
    gen = sum(r.generated for r in results)
    ctoks = sum(r.completion_tokens for r in results)
    gsec = sum(r.generate_seconds for r in results)
    return {
        "rows_written": rows,
        "processes": sorted(loads),  # host:pid that ran units (threads: this one; a cluster: its workers)
        "backend_loads": sum(loads.values()),  # a model per process that generated, loaded once
        "requests": sum(r.requests for r in results),
        "cache_hits": sum(r.cache_hits for r in results),
        "generated": gen,
        "generated_by_attempt": by_attempt,
        "filtered": sum(filt.values()),
        "filtered_by_reason": dict(sorted(filt.items())),
        "quarantined": sum(quar.values()),
        "quarantined_by_reason": dict(sorted(quar.items())),
        "trimmed": sum(r.trimmed for r in results),
        "choice_rows": sum(r.choice_rows for r in results),
        "rows_by_asked_value": dict(sorted(asked.items())),
        "rows_by_stated_value": dict(sorted(stated.items())),
        "prompt_tokens": sum(r.prompt_tokens for r in results),
        "completion_tokens": ctoks,
        "tokens": sum(r.prompt_tokens for r in results) + ctoks,
        "wall_seconds": round(wall_seconds, 3),
        "generate_seconds": round(gsec, 3),
        "rows_per_s": round(rows / wall_seconds, 3) if wall_seconds else 0.0,
        "generated_per_s": round(gen / gsec, 3) if gsec else 0.0,
        "tokens_per_s": round(ctoks / gsec, 1) if gsec else 0.0,
    }


# How the units of a job are run: in this process one after another (`desta label`), or as Prefect
# tasks on a task runner (flows/label.py); either returns one result per unit, in unit order.
MapUnits = Callable[[list[Unit], LabelJob, Progress], list[UnitResult]]


def run_in_process(units: list[Unit], job: LabelJob, on_progress: Progress) -> list[UnitResult]:
    return [run_unit(u, job, on_progress) for u in units]


def label(seeds: Path, out: Path, cfg: LabelConfig, models: ModelsConfig,
          cache_dir: Path | None = None, backend: Backend | None = None, show_progress: bool = True,
          map_units: MapUnits = run_in_process) -> dict[str, Any]:
    """The one label driver (one writer per output dir): plan the units of the seed rows in `seeds` (a seeds
    output dir or a JSONL file, read streaming), run them with `map_units`, then write provenance and stats;
    returns the stats."""
    t0 = time.perf_counter()
    with one_writer(out, "label"):
        job = prepare_job(out, cfg, models, cache_dir, backend)
        for marker in (out / SHARD_DIR / PROVENANCE, out / STATS):  # unfinished until finalize writes them again
            marker.unlink(missing_ok=True)
        try:
            units = plan_units(seeds, job)
            total = sum(u.size for u in units)
            tokens = [0]
            with progress_bar("label", total=total, enabled=show_progress, unit="rows") as advance:
                def on_progress(rows: int, toks: int) -> None:
                    tokens[0] += toks
                    advance(rows, **{"tok/s": f"{tokens[0] / max(time.perf_counter() - t0, 1e-9):.0f}"})

                results = map_units(units, job, on_progress)
            return finalize(job, units, results, time.perf_counter() - t0)
        finally:
            job.close()
