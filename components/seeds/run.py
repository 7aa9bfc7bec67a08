"""`desta seeds`: a seed description for every accepted clip, in JSONL shards, plus a report."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from components import measure as A
from components.atomic import atomic_dir, atomic_write_text, clear_temps, named
from components.audio import audio_ref, read_audio_ref
from components.config import SeedsConfig
from components.measure import looks_like_speech
from components.progress import progress_bar
from components.records import MANIFEST, SEED_SHARD_DIR, read_jsonl
from components.seeds.describe import sound_description, speech_description
from components.seeds.split import assign_splits
from components.model.transcribe import Engine, make_transcriber
from components.text import wer
from components.vocab import LEVELS, SPEEDS

REPORT = "report.json"


@dataclass
class Clip:
    row: dict[str, Any]
    ref: str
    wav: torch.Tensor


CHUNK_BATCHES = 8  # Whisper batches per chunk (= one task when fanned out)


class ChunkResult(NamedTuple):
    engine: str  # "<engine>/<precision that ran>"
    texts: list[str]


@dataclass(frozen=True)
class WhisperJob:
    """What transcribing a chunk needs, picklable (absolute paths): a worker process of a cluster loads
    its engine once, on its first chunk, and keeps it."""

    engine: str
    whisper_dir: str
    batch_size: int
    data_root: str

    def load(self) -> Engine:
        return make_transcriber(self.engine, self.whisper_dir, self.batch_size)

    def worker_engine(self) -> Engine:
        """This process's engine for the job, loaded on first use (a cluster worker's, kept between chunks)."""
        with _LOCK:
            if self not in _ENGINES:
                _ENGINES[self] = self.load()
            return _ENGINES[self]


_ENGINES: dict[WhisperJob, Engine] = {}
_LOCK = threading.Lock()
MapChunks = Callable[[list[list[str]], WhisperJob, Callable[[int], None]], list[ChunkResult]]


def transcribe_chunk(refs: list[str], job: WhisperJob, on_batch: Callable[[int], None] | None = None,
                     engine: Engine | None = None, wavs: dict[str, np.ndarray] | None = None) -> ChunkResult:
    """Whisper's greedy text of each clip reference (from `wavs` when given, else read from the job's data
    root), by `engine` or this process's engine for the job."""
    clips = [wavs[r] if wavs is not None else read_audio_ref(Path(job.data_root), r)[0] for r in refs]
    engine = engine or job.worker_engine()
    return ChunkResult(engine.engine, engine(clips, on_batch=on_batch))


def run_in_process(chunks: list[list[str]], job: WhisperJob, advance: Callable[[int], None],
                   wavs: dict[str, np.ndarray] | None = None) -> list[ChunkResult]:
    """One engine for this call (freed after it: a long-lived process keeps no model), chunk after chunk,
    on the clips already in memory when given."""
    engine = job.load() if chunks else None
    return [transcribe_chunk(c, job, advance, engine, wavs) for c in chunks]


def whisper_chunks(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Positions by clip length cut into chunks of whole batches: each chunk's batches are exactly the
    batches one pass over all clips would make, so the text is the same however the chunks run."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = batch_size * CHUNK_BATCHES
    return [order[i : i + size] for i in range(0, len(order), size)]


def _local(model: str | Path) -> str:
    """A local model dir as an absolute path (workers may start elsewhere); a hub id as it is."""
    return str(Path(model).absolute()) if Path(model).exists() else str(model)  # links kept: `<dir>-ct2` is a sibling link


def _attributes(meta: dict[str, Any], m: A.Measured, transcript: str, cfg: SeedsConfig) -> dict[str, dict]:
    """Paper field -> {"value", "source"}: metadata when it gives one, else measured."""
    out: dict[str, dict] = {}
    if meta.get("emotion"):
        out["Emotion"] = {"value": str(meta["emotion"]).capitalize(), "source": "metadata"}
    gender = meta.get("gender")
    if gender:
        gender = {"m": "Male", "f": "Female"}.get(str(gender).lower()[:1], str(gender))
        out["Gender"] = {"value": gender, "source": "metadata"}
    elif A.gender_from_pitch(m.pitch_hz):
        out["Gender"] = {"value": A.gender_from_pitch(m.pitch_hz), "source": "measured"}
    measured = {
        "Pitch": (meta.get("pitch"), m.pitch_hz, cfg.pitch_hz_edges, LEVELS),
        "Volume": (meta.get("volume"), m.loudness_db, cfg.volume_dbfs_edges, LEVELS),
        "Speaking speed": (
            meta.get("speaking_speed"), A.words_per_second(transcript, m.voiced_seconds), cfg.speed_wps_edges, SPEEDS,
        ),
    }
    for name, (given, value, edges, words) in measured.items():
        if given:
            out[name] = {"value": str(given), "source": "metadata"}
        elif value is not None:
            out[name] = {"value": A.bucket(value, edges, words), "source": "measured"}
    return out


def build_seeds(
    manifest_dir: Path,
    data_root: Path,
    out_dir: Path,
    whisper_dir: str | Path,
    cfg: SeedsConfig,
    test_fraction: float = 0.2,
    show_progress: bool = True,
    map_chunks: MapChunks | None = None,
) -> dict[str, Any]:
    """Write seed rows for every clip in manifest_dir/manifest.jsonl; returns the report. Whisper's
    chunks run through `map_chunks` (default: here, one after another; flows/seeds.py: as tasks)."""
    rows = read_jsonl(manifest_dir / MANIFEST)
    if not rows:
        raise ValueError(f"no clips in {manifest_dir / MANIFEST}: run `desta ingest` first")
    clips: list[Clip] = []
    with progress_bar("seeds: measure", total=len(rows), enabled=show_progress, unit="clips") as advance:
        for row in rows:
            ref = audio_ref(manifest_dir, data_root, row)
            data, _ = read_audio_ref(data_root, ref)
            clips.append(Clip(row, ref, torch.from_numpy(data)))
            advance(1)
    measured = [A.measure(c.wav) for c in clips]

    # Whisper runs on clips without a given transcript, and on a sample of the others for the WER
    # report (a fixed number per dataset, picked by content id so the sample is stable).
    need = [i for i, c in enumerate(clips) if c.row["metadata"].get("kind") != "sound"
            and not c.row["metadata"].get("transcript")]
    given: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        if c.row["metadata"].get("transcript"):
            given.setdefault(c.row["dataset"], []).append(i)
    for idx in given.values():
        need += sorted(idx, key=lambda i: clips[i].row["id"])[: cfg.report_clips_per_dataset]
    need.sort()
    # In one process the clips measured above are heard from memory; tasks read theirs from the data root.
    map_chunks = map_chunks or partial(run_in_process, wavs={clips[i].ref: clips[i].wav.numpy() for i in need})
    job = WhisperJob(cfg.engine, _local(whisper_dir), cfg.whisper_batch_size, str(Path(data_root).absolute()))
    chunks = whisper_chunks([len(clips[i].wav) for i in need], cfg.whisper_batch_size)
    with progress_bar("seeds: whisper", total=len(need), enabled=show_progress, unit="clips") as advance:
        done = map_chunks([[clips[need[k]].ref for k in chunk] for chunk in chunks], job, advance)
    whisper = {need[k]: text for chunk, result in zip(chunks, done) for k, text in zip(chunk, result.texts)}
    engine = done[0].engine if done else job.load().engine

    out_rows: list[dict[str, Any]] = []
    for i, (clip, m) in enumerate(zip(clips, measured)):
        meta = clip.row["metadata"]
        given = meta.get("transcript")
        transcript = given or whisper.get(i, "")
        kind = meta.get("kind") or ("speech" if looks_like_speech(transcript, m) else "sound")
        if kind == "speech":
            attrs = _attributes(meta, m, transcript, cfg)
            desc = speech_description(m.duration, transcript, {k: v["value"] for k, v in attrs.items()})
        else:
            attrs = {"Audio category": {"value": str(meta.get("category", "unknown")), "source": "metadata" if meta.get("category") else "unknown"}}
            transcript = None
            desc = sound_description(m.duration, attrs["Audio category"]["value"])
        out_rows.append({
            "id": clip.row["id"],
            "dataset": clip.row["dataset"],
            "audio": clip.ref,
            "transcript": transcript or None,
            "seed_description": desc,
            "kind": kind,
            "speaker": meta.get("speaker"),
            "transcript_source": ("metadata" if given else "whisper") if kind == "speech" else None,
            "whisper_transcript": whisper.get(i),
            "attributes": attrs,
            "measured": {"pitch_hz": m.pitch_hz, "loudness_db": m.loudness_db, "voiced_seconds": m.voiced_seconds,
                         "duration": m.duration},
            "synth": meta.get("synth"),
        })
    for row, split in zip(out_rows, assign_splits(out_rows, test_fraction, cfg.split_seed)):
        row["split"] = split
    _write_shards(out_dir, out_rows, cfg.shard_rows)
    report = seeds_report(out_rows, cfg) | {"whisper_engine": engine}  # e.g. ct2/float32
    atomic_write_text(out_dir / REPORT, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _write_shards(out_dir: Path, rows: list[dict[str, Any]], shard_rows: int) -> None:
    """Every shard into a temp dir that replaces the shard dir in one rename: a reader sees the old set or
    the new one, never a mix or a part (a full disk or a kill mid-write leaves the old set)."""
    clear_temps(out_dir)
    with atomic_dir(out_dir / SEED_SHARD_DIR) as tmp:
        for n, start in enumerate(range(0, len(rows), shard_rows)):
            text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows[start : start + shard_rows])
            try:
                (tmp / f"seeds-{n:06d}.jsonl").write_text(text)
            except OSError as err:
                raise named(err, out_dir / SEED_SHARD_DIR) from err


def seeds_report(rows: list[dict[str, Any]], cfg: SeedsConfig) -> dict[str, Any]:
    """Counts, Whisper WER on clips with a known transcript, and measured-vs-truth agreement."""
    kinds = Counter(r["kind"] for r in rows)
    splits = Counter(r["split"] for r in rows)
    known = [r for r in rows if r["transcript_source"] == "metadata" and r["whisper_transcript"] is not None]
    by_dataset = {}
    for ds in sorted({r["dataset"] for r in known}):
        sub = [r for r in known if r["dataset"] == ds]
        by_dataset[ds] = {"wer": round(wer([r["transcript"] for r in sub], [r["whisper_transcript"] for r in sub]), 4),
                          "n": len(sub)}
    synth = [r for r in rows if r.get("synth")]
    agreement: dict[str, dict] = {}
    for field, truth_key, fn in (
        ("Gender", None, lambda r: A.gender_from_pitch(r["measured"]["pitch_hz"])),
        ("Pitch", "pitch", lambda r: A.bucket(r["measured"]["pitch_hz"], cfg.pitch_hz_edges, LEVELS)
         if r["measured"]["pitch_hz"] else None),
        ("Volume", "volume", lambda r: A.bucket(r["measured"]["loudness_db"], cfg.volume_dbfs_edges, LEVELS)
         if r["measured"]["loudness_db"] is not None else None),
        ("Speaking speed", "speed", lambda r: A.bucket(w, cfg.speed_wps_edges, SPEEDS)
         if (w := A.words_per_second(r["transcript"] or "", r["measured"]["voiced_seconds"])) else None),
    ):
        pairs = [((r["attributes"]["Gender"]["value"] if truth_key is None else r["synth"][truth_key]), fn(r))
                 for r in synth]
        agree = sum(t == p for t, p in pairs)
        agreement[field] = {"agree": round(agree / len(pairs), 4) if pairs else None, "n": len(pairs)}
    return {
        "clips": len(rows),
        "speech": kinds.get("speech", 0),
        "sound": kinds.get("sound", 0),
        "split": dict(sorted(splits.items())),
        "whisper_wer_on_known_transcripts": by_dataset,
        "measured_vs_espeak_settings": agreement,
    }
