"""Issue 4 benchmarks: ingestion speed (x real time, 2 workers vs 1) and batched vs per-clip Whisper."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from components.config import load_profile
from components.ingest.decode import Limits
from components.ingest.embedded import EspeakSettings, default_cache, embedded_candidates
from components.ingest.run import MANIFEST, ingest
from components.records import read_jsonl
from components.audio import read_audio_ref
from components.model.transcribe import Transcriber

pytestmark = pytest.mark.bench


def test_ingest_speed(tmp_path: Path, repo: Path, record) -> None:
    cfg = load_profile(repo / "params.yaml").ingest
    cands = embedded_candidates(EspeakSettings(**cfg.embedded.model_dump()), default_cache())
    limits = Limits(cfg.min_duration, cfg.max_duration, cfg.silence_dbfs)
    figures = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        report = ingest(cands, tmp_path / f"w{workers}", limits, 64 << 20, workers=workers, show_progress=False)
        wall = time.perf_counter() - t0
        figures[f"workers_{workers}"] = {"inputs": report.total, "audio_seconds": round(report.audio_seconds, 1),
                                         "wall_seconds": round(wall, 2),
                                         "x_real_time": round(report.audio_seconds / wall, 1)}
    t0 = time.perf_counter()
    ingest(cands, tmp_path / "w2", limits, 64 << 20, workers=2, show_progress=False)
    figures["noop_rerun_seconds"] = round(time.perf_counter() - t0, 2)
    figures["parallel_speedup"] = round(figures["workers_2"]["x_real_time"] / figures["workers_1"]["x_real_time"], 2)
    record("ingest_speed", figures)
    assert figures["workers_2"]["x_real_time"] >= 200


def test_whisper_batched_vs_per_clip(tmp_path: Path, repo: Path, embedded_models: dict[str, Path], record) -> None:
    src = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
    from components.ingest.directory import prepare_directory

    ingest(prepare_directory(src)[:48], tmp_path / "ingest", Limits(0.3, 30.0, -60.0), 64 << 20, show_progress=False)
    rows = read_jsonl(tmp_path / "ingest" / MANIFEST)
    clips = [read_audio_ref(tmp_path, f"ingest/{r['shard']}/{r['id']}.flac")[0] for r in rows][:32]
    whisper = embedded_models["whisper-tiny.en"]
    batched = Transcriber(whisper, batch_size=16)
    single = Transcriber(whisper, batch_size=1)
    batched(clips[:2])  # warm-up
    t0 = time.perf_counter()
    out_b = batched(clips)
    t_b = time.perf_counter() - t0
    t0 = time.perf_counter()
    out_s = single(clips)
    t_s = time.perf_counter() - t0
    agree = sum(a == b for a, b in zip(out_b, out_s)) / len(clips)
    record("whisper_batching", {"clips": len(clips), "batched_16_clips_per_s": round(len(clips) / t_b, 2),
                                "per_clip_clips_per_s": round(len(clips) / t_s, 2), "speedup": round(t_s / t_b, 2),
                                "same_text_fraction": round(agree, 3)})
    assert t_b < t_s
