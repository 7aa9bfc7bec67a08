"""Ingest candidates into shards + manifest.jsonl + quarantine.jsonl, incrementally and streaming.

Every input lands in exactly one of manifest.jsonl / quarantine.jsonl. Inputs already ingested
with the same bytes are kept as they were (a re-run is a no-op, byte for byte); only new or
changed inputs are decoded. Shards are closed (renamed) before the manifest naming them is.

Two passes over the candidates, block by block, so no run holds every input, row or clip: the first
hashes each input and decides reuse (kept ids are known before any clip is written: a new clip that
duplicates a reused one is quarantined wherever it comes); the second decodes a block's new inputs
(`decode`: a local process pool, or tasks on a cluster, flows/ingest.py) and streams their rows out.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.atomic import atomic_open, atomic_write_text, clear_temps
from components.ingest import candidates as c
from components.ingest.candidates import Candidate
from components.ingest.decode import Decoded, Limits, Rejected, decode_clip
from components.ingest.sources import Sources
from components.ingest.shards import SHARD_DIR, ShardWriter, next_shard_index
from components.progress import progress_bar
from components.ingest.earlier import QUARANTINE, Earlier
from components.records import MANIFEST

if TYPE_CHECKING:
    from components.config import IngestConfig

STATS = "stats.json"
BLOCK = 2048  # inputs per step: bounds the FLAC bytes held at once (~200 MB of 5 s clips)
SKIP, REUSE, REJECT, DECODE = range(4)  # what the first pass decides per input, in input order

# Decode these files in order (results in the same order); the in-process default is a fork pool.
Decode = Callable[[list[Path], Limits], Iterable[Decoded | Rejected]]


@dataclass
class IngestReport:
    accepted: int = 0
    quarantined: Counter = field(default_factory=Counter)
    reused: int = 0
    decoded: int = 0
    audio_seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.accepted + sum(self.quarantined.values())

    def as_dict(self) -> dict[str, Any]:
        """What the outputs hold (deterministic: written to stats.json)."""
        return {
            "accepted": self.accepted,
            "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "total": self.total,
            "accepted_audio_seconds": round(self.audio_seconds, 3),
        }


def _blocks(cands: Iterable[Candidate]) -> Iterator[list[Candidate]]:
    it = iter(cands)
    while block := list(islice(it, BLOCK)):
        yield block


def _hash_all(cands: list[Candidate], workers: int) -> list[bytes | None]:
    def one(cand: Candidate) -> bytes | None:
        try:
            return bytes.fromhex(c.file_sha256(cand.path)) if cand.path is not None and cand.path.is_file() else None
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(2, workers)) as pool:
        return list(pool.map(one, cands))


def _decode_job(args: tuple[Path, Limits]) -> Decoded | Rejected:
    return decode_clip(*args)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; no oversubscription


@contextmanager
def local_decoder(workers: int) -> Iterator[Decode]:
    """`Decode` on a pool of `workers` forked processes, started at the first clip and kept for the run.

    A `ProcessPoolExecutor`, not `multiprocessing.Pool`: when the run fails (a full disk) while a worker is
    writing a large result, `Pool.terminate()` waits for the result queue's lock that worker holds and hangs
    (seen in CI); the executor's own thread keeps reading results while it shuts down."""
    pool: ProcessPoolExecutor | None = None

    def decode(paths: list[Path], limits: Limits) -> Iterable[Decoded | Rejected]:
        nonlocal pool
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init_worker)
        return pool.map(_decode_job, [(p, limits) for p in paths], chunksize=4)

    try:
        yield decode
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Plan:
    actions: bytearray = field(default_factory=bytearray)  # one per input, in order
    digests: list[bytes | None] = field(default_factory=list)  # one per input to write anew, in order
    kept_ids: dict[str, str] = field(default_factory=dict)  # clip id -> the source it came from
    keys: Any = field(default_factory=hashlib.sha256)  # the inputs' order: both passes must see the same


def _plan(cands: Iterable[Candidate], earlier: Earlier, workers: int) -> _Plan:
    """The first pass: hash every input, decide per input what the second pass does."""
    plan, seen = _Plan(), set()
    for block in _blocks(cands):
        firsts = []
        for cand in block:  # the same path given twice (two --source) is one input
            plan.keys.update(cand.key.encode() + b"\0")
            firsts.append(cand.key not in seen)
            seen.add(cand.key)
        digests = iter(_hash_all([cand for cand, first in zip(block, firsts) if first], workers))
        for cand, first in zip(block, firsts):
            if not first:
                plan.actions.append(SKIP)
                continue
            digest = next(digests)
            old = earlier.match(cand, digest)
            if old is None:
                plan.actions.append(REJECT if cand.reject is not None else DECODE)
                plan.digests.append(digest)
                continue
            plan.actions.append(REUSE)
            if old[0] == 0:
                plan.kept_ids[old[1]] = cand.key
    return plan


def ingest(
    cands: Iterable[Candidate],
    out_dir: Path,
    limits: Limits,
    shard_max_bytes: int,
    workers: int = 2,
    show_progress: bool = True,
    decode: Decode | None = None,
) -> IngestReport:
    """Decode, check and shard `cands` (a list, or anything iterable twice alike: components.ingest.sources
    .Sources) into `out_dir`; returns the counts. `decode` runs the clips elsewhere (default: `workers`
    local processes); the outputs do not depend on where."""
    if iter(cands) is cands:
        raise TypeError("ingest walks its candidates twice: pass a list or a Sources, not an iterator")
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = Earlier(out_dir)
    try:
        plan = _plan(cands, earlier, workers)
        with local_decoder(workers) if decode is None else nullcontext(decode) as run_decode:
            report = _write(cands, plan, earlier, out_dir, limits, shard_max_bytes, run_decode, show_progress)
    finally:
        earlier.close()
    atomic_write_text(out_dir / STATS, json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    clear_temps(out_dir)  # a killed run's half-written manifest/stats
    return report


def _write(cands: Iterable[Candidate], plan: _Plan, earlier: Earlier, out_dir: Path, limits: Limits,
           shard_max_bytes: int, decode: Decode, show_progress: bool) -> IngestReport:
    """The second pass: rows in input order (earlier lines verbatim), new clips decoded a block at a time and
    sharded; the quarantine, then the manifest, replace the old ones only after every shard is closed."""
    report, shards = IngestReport(), set()
    actions, digests, keys = iter(plan.actions), iter(plan.digests), hashlib.sha256()
    writer = ShardWriter(out_dir, shard_max_bytes, next_shard_index(out_dir))
    try:
        with atomic_open(out_dir / MANIFEST) as mf, atomic_open(out_dir / QUARANTINE) as qf, progress_bar(
            "ingest", total=plan.actions.count(DECODE), enabled=show_progress and DECODE in plan.actions
        ) as advance:
            for block in _blocks(cands):
                acts = [next(actions, SKIP) for _ in block]
                for cand in block:
                    keys.update(cand.key.encode() + b"\0")
                results = iter(decode([cand.path for cand, a in zip(block, acts) if a == DECODE], limits))
                for cand, act in zip(block, acts):
                    if act == SKIP:
                        continue
                    if act == REUSE:
                        k, line = earlier.line(cand.key)
                        row = json.loads(line)
                        report.reused += 1
                    else:
                        digest = next(digests)
                        hexd = digest.hex() if digest is not None else None
                        if act == REJECT:
                            row, k = _q(cand, cand.reject, cand.detail or "", hexd), 1
                        else:
                            row, k = _new_row(cand, next(results), hexd, writer, plan.kept_ids, limits)
                            advance(1)
                        line = json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n"
                    (qf if k else mf).write(line)
                    if k:
                        report.quarantined[row["reason"]] += 1
                    else:
                        report.accepted += 1
                        report.audio_seconds += row["duration"]
                        shards.add(row["shard"])
            if keys.digest() != plan.keys.digest():
                raise RuntimeError("the inputs changed while ingest ran (a file added or removed): run ingest again")
            writer.close()
    except BaseException:
        writer.abort()  # the manifest on disk is the previous one: it names none of this run's shards
        raise
    report.decoded = plan.actions.count(DECODE)
    assert report.total == len(plan.actions) - plan.actions.count(SKIP), "every input lands in one output file"
    _drop_unreferenced_shards(out_dir, shards)
    return report


def ingest_stage(cfg: IngestConfig, sample_rate: int, out: Path, sources: list[str] | None = None,
                 data_root: Path | None = None, workers: int | None = None, decode: Decode | None = None,
                 show_progress: bool = True) -> IngestReport:
    """The stage as configured (`desta ingest`, and its flow on a cluster): `sources` (default: the
    configured ones) under `data_root` (default: ingest.data_root) through `ingest`."""
    from components.ingest.embedded import EspeakSettings
    from components.ingest.music import MusicSettings

    root = data_root or (Path(cfg.data_root) if cfg.data_root else None)
    cands = Sources(sources or cfg.sources, root, EspeakSettings(**cfg.embedded.model_dump()),
                    drum_clips_per_category=cfg.drum_clips_per_category, music=MusicSettings(**cfg.music.model_dump()))
    limits = Limits(cfg.min_duration, cfg.max_duration, cfg.silence_dbfs, sample_rate)
    return ingest(cands, out, limits, cfg.shard_max_mb * 2**20, workers or cfg.workers, show_progress, decode)


def _new_row(cand: Candidate, res: Decoded | Rejected, digest: str | None, writer: ShardWriter,
             kept_ids: dict[str, str], limits: Limits) -> tuple[dict[str, Any], int]:
    """A decoded input's row and its file (0 manifest, 1 quarantine); an accepted clip goes into a shard."""
    if isinstance(res, Rejected):
        return _q(cand, res.reason, res.detail, digest), 1
    if res.id in kept_ids:
        return {**_q(cand, c.DUPLICATE, f"same audio as {kept_ids[res.id]}", digest), "kept_id": res.id}, 1
    shard = writer.add(res.id, res.flac)
    kept_ids[res.id] = cand.source
    return {
        "id": res.id,
        "source": cand.source,
        "source_sha256": digest,
        "dataset": cand.dataset,
        "duration": res.duration,
        "sample_rate": limits.sample_rate,
        "shard": f"{SHARD_DIR}/{shard}",
        "original_sample_rate": res.original_sample_rate,
        "original_channels": res.original_channels,
        "metadata": cand.metadata,
    }, 0


def _q(cand: Candidate, reason: str, detail: str, digest: str | None) -> dict[str, Any]:
    row = {"source": cand.source, "dataset": cand.dataset, "reason": reason, "detail": detail}
    if digest is not None:
        row["source_sha256"] = digest
    return row


def _drop_unreferenced_shards(out_dir: Path, referenced: set[str]) -> None:
    """Shards no manifest row names (left by a crash, or inputs since removed) are garbage."""
    for shard in (out_dir / SHARD_DIR).glob("shard-*.tar*"):
        if f"{SHARD_DIR}/{shard.name}" not in referenced:
            shard.unlink()
