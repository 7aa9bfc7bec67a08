"""Ingest candidates into shards + manifest.jsonl + quarantine.jsonl, incrementally.

Every input lands in exactly one of manifest.jsonl / quarantine.jsonl. Inputs already ingested
with the same bytes are kept as they were (a re-run is a no-op, byte for byte); only new or
changed inputs are decoded. Shards are closed (renamed) before the manifest naming them is.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.atomic import atomic_write_text, clear_temps
from components.ingest import candidates as c
from components.ingest.candidates import Candidate
from components.ingest.decode import Decoded, Limits, Rejected, decode_clip
from components.ingest.shards import SHARD_DIR, ShardWriter, next_shard_index
from components.progress import progress_bar
from components.records import MANIFEST, DamagedFile, read_jsonl

QUARANTINE = "quarantine.jsonl"
STATS = "stats.json"


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


def _dumps(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)


def _hash_all(cands: list[Candidate], workers: int) -> list[str | None]:
    def one(cand: Candidate) -> str | None:
        try:
            return c.file_sha256(cand.path) if cand.path is not None and cand.path.is_file() else None
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(2, workers)) as pool:
        return list(pool.map(one, cands))


def _decode_job(args: tuple[Path, Limits]) -> Decoded | Rejected:
    return decode_clip(*args)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; no oversubscription


def ingest(
    cands: list[Candidate],
    out_dir: Path,
    limits: Limits,
    shard_max_bytes: int,
    workers: int = 2,
    show_progress: bool = True,
) -> IngestReport:
    """Decode, check and shard `cands` into `out_dir`; returns the counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    unique: list[Candidate] = []
    for cand in cands:  # the same path given twice (two --source) is one input
        if cand.key not in seen:
            seen.add(cand.key)
            unique.append(cand)
    try:
        previous = {r["source"]: r for r in read_jsonl(out_dir / MANIFEST) + read_jsonl(out_dir / QUARANTINE)}
    except DamagedFile as err:  # our own earlier output, damaged from outside: a re-run alone cannot mend it
        raise DamagedFile(err.where, f"ingest's earlier output is damaged: remove {out_dir} (or `dvc checkout` it) "
                                     "and run ingest again") from None
    digests = _hash_all(unique, workers)

    # Decide per input: reuse the previous row, or decode (in parallel, in input order).
    plan: list[tuple[Candidate, str | None, dict | None]] = []
    for cand, digest in zip(unique, digests):
        old = previous.get(cand.key)
        reusable = old is not None and old.get("source_sha256") == digest and (
            cand.reject is None or old.get("reason") == cand.reject
        )
        plan.append((cand, digest, old if reusable else None))
    to_decode = [(cand.path, limits) for cand, _, old in plan if old is None and cand.reject is None]

    report = IngestReport()
    results: dict[int, Decoded | Rejected] = {}
    if to_decode:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker) as pool, progress_bar(
            "ingest", total=len(to_decode), enabled=show_progress
        ) as advance:
            for i, res in enumerate(pool.imap(_decode_job, to_decode, chunksize=4)):
                results[i] = res
                advance(1)
    report.decoded = len(to_decode)

    writer = ShardWriter(out_dir, shard_max_bytes, next_shard_index(out_dir))
    try:
        manifest, quarantine = _write(plan, results, writer, limits, report)
        report.accepted = len(manifest)
        report.quarantined = Counter(r["reason"] for r in quarantine)
        report.audio_seconds = sum(r["duration"] for r in manifest)
        assert report.total == len(unique), "every input must land in exactly one output file"
        atomic_write_text(out_dir / QUARANTINE, _dumps(quarantine))
        atomic_write_text(out_dir / MANIFEST, _dumps(manifest))
    except BaseException:
        writer.abort()  # the manifest on disk is the previous one: it names none of this run's shards
        raise
    atomic_write_text(out_dir / STATS, json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    _drop_unreferenced_shards(out_dir, {r["shard"] for r in manifest})
    clear_temps(out_dir)  # a killed run's half-written manifest/stats
    return report


def _write(plan: list[tuple[Candidate, str | None, dict | None]], results: dict[int, Decoded | Rejected],
           writer: ShardWriter, limits: Limits, report: IngestReport) -> tuple[list[dict], list[dict]]:
    """Shard the accepted clips in input order; returns the manifest and quarantine rows."""
    kept_ids = {old["id"]: old["source"] for _, _, old in plan if old is not None and "id" in old}
    manifest: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    k = 0
    for cand, digest, old in plan:
        if old is not None:
            (manifest if "id" in old else quarantine).append(old)
            report.reused += 1
            continue
        if cand.reject is not None:
            quarantine.append(_q(cand, cand.reject, cand.detail or "", digest))
            continue
        res = results[k]
        k += 1
        if isinstance(res, Rejected):
            quarantine.append(_q(cand, res.reason, res.detail, digest))
        elif res.id in kept_ids:
            row = _q(cand, c.DUPLICATE, f"same audio as {kept_ids[res.id]}", digest)
            quarantine.append({**row, "kept_id": res.id})
        else:
            shard = writer.add(res.id, res.flac)
            kept_ids[res.id] = cand.source
            manifest.append({
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
            })
    writer.close()
    return manifest, quarantine


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
