"""Seeds-stage Whisper engines side by side: today's hf engine (bf16 autocast where the CPU has native
bf16, else fp32), hf fp32, and CTranslate2 at float32, int8 and the model's default compute type, on the
same espeak clips of the embedded corpus. Batches are interleaved (every engine decodes batch k before
any decodes batch k+1) so a neighbour's load on a shared box falls on all engines alike. Figures in
bench/results/seeds_whisper.json: clips/s, ratio against hf, CPU seconds per clip, WER against the
known transcripts, the CPU and the share of it other processes took."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import pytest

from components.audio import load_audio
from components.ingest.embedded import EspeakSettings, build_espeak_corpus, default_cache
from components.model.transcribe import CT2_COMPUTE_TYPE, CT2Transcriber, Transcriber
from components.text import wer
from tests.bench.conftest import cpu as cpu_info
from tests.bench.test_bench_label import HostLoad

pytestmark = pytest.mark.bench
CLIPS, BATCH = 128, 16



def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime + r.ru_stime


@pytest.mark.timeout(5400)
def test_seeds_whisper_engines(embedded_models: dict[str, Path], record) -> None:
    whisper = embedded_models["whisper-tiny.en"]
    corpus = build_espeak_corpus(EspeakSettings(espeak_clips=300), default_cache())
    rows = [json.loads(x) for x in (corpus / "metadata.jsonl").read_text().splitlines()][:CLIPS]
    clips = [load_audio(corpus / r["file"]).numpy() for r in rows]
    truth = [r["transcript"] for r in rows]
    engines = {"hf": Transcriber(whisper, BATCH), "hf_fp32": Transcriber(whisper, BATCH, bf16=False),
               **{f"ct2_{ct}": CT2Transcriber(whisper, BATCH, compute_type=ct) for ct in ("float32", "int8", "default")}}
    for engine in engines.values():
        engine(clips[:2])  # warm-up: first-call allocations
    # Length-sorted batches, as each engine would cut them itself; every engine gets the same batches.
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
    seconds = dict.fromkeys(engines, 0.0)
    cpu = dict.fromkeys(engines, 0.0)
    text: dict[str, list[str]] = {name: [""] * len(clips) for name in engines}
    load = HostLoad()
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        for name, engine in engines.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            out = engine([clips[i] for i in idx])
            seconds[name] += time.perf_counter() - t0
            cpu[name] += _cpu_seconds() - c0
            for i, t in zip(idx, out):
                text[name][i] = t
    figures = {name: {"engine": engine.engine, "seconds": round(seconds[name], 2),
                      "clips_per_s": round(len(clips) / seconds[name], 3),
                      "x_vs_hf": round(seconds["hf"] / seconds[name], 2),
                      "cpu_seconds_per_clip": round(cpu[name] / len(clips), 3),
                      "wer": round(wer(truth, text[name]), 4),
                      "identical_to_hf": sum(a == b for a, b in zip(text[name], text["hf"])),
                      "identical_to_hf_fp32": sum(a == b for a, b in zip(text[name], text["hf_fp32"]))}
               for name, engine in engines.items()}
    ct2 = {n: f for n, f in figures.items() if n.startswith("ct2_") and f["wer"] <= figures["hf"]["wer"]}
    fastest = max(ct2, key=lambda n: ct2[n]["clips_per_s"]) if ct2 else None
    record("seeds_whisper", {
        "clips": len(clips), "batch": BATCH, "source": "embedded espeak corpus (first clips, 16 kHz)",
        "mean_clip_seconds": round(float(np.mean([len(c) for c in clips])) / 16000, 2),
        "cpu": cpu_info(), "others_load": load.others(), "engines": figures,
        "fastest_ct2_not_above_hf_wer": fastest, "ct2_compute_type_in_use": CT2_COMPUTE_TYPE})
    # Same weights and features: CT2 float32 must reproduce the fp32 HF text (a broken decoder would not).
    assert figures["ct2_float32"]["wer"] <= figures["hf_fp32"]["wer"] + 0.02, figures
    assert figures[f"ct2_{CT2_COMPUTE_TYPE}"]["wer"] <= figures["hf"]["wer"] + 0.02, figures
