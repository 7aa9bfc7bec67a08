"""A small real corpus for model/training tests: asterisk speech + freedesktop sounds, ingested
into tar shards by the real ingest stage, and hand-made DeSTA-AQA5M rows over them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import soundfile as sf

from components.ingest.asterisk import speech_prompts
from components.ingest.decode import Limits
from components.ingest.directory import prepare_directory
from components.ingest.run import MANIFEST, ingest
from components.records import read_jsonl

SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")
SYSTEM = "Focus on the audio clips and instructions."


def _short_prompts(n: int, max_seconds: float) -> list[tuple[Path, str]]:
    out = []
    for wav, text in speech_prompts():
        info = sf.info(str(wav))
        if 0.5 <= info.duration <= max_seconds:
            out.append((wav, text))
    step = max(1, len(out) // n)
    return out[::step][:n]


def build_corpus(root: Path, n_speech: int = 12, sounds: tuple[str, ...] = ("bell", "camera-shutter", "complete", "message")) -> list[dict]:
    """Ingest real clips under `root` (the data root); return AQA rows referencing them."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    meta = []
    for wav, text in _short_prompts(n_speech, 2.5):
        shutil.copy(wav, raw / wav.name)
        meta.append({"file": wav.name, "transcript": text, "kind": "speech"})
    for name in sounds:
        shutil.copy(SOUNDS / f"{name}.oga", raw / f"{name}.oga")
        meta.append({"file": f"{name}.oga", "kind": "sound", "category": name})
    (raw / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    ingest(prepare_directory(raw), root / "ingest", Limits(0.1, 30.0, -60.0), 64 << 20, workers=1, show_progress=False)
    rows = []
    for clip in read_jsonl(root / "ingest" / MANIFEST):
        ref = f"ingest/{clip['shard']}/{clip['id']}.flac"
        md = clip["metadata"]
        if md.get("kind") == "speech":
            t = md["transcript"]
            qa = [("What does the speaker say?", f'The speaker says: "{t}"'),
                  ("Describe the voice.", "A calm female voice reads a short telephone prompt.")]
        else:
            name = md["category"].replace("-", " ")
            qa = [("What sound is this?", f"This is a {name} sound."),
                  ("Describe the audio.", f"A short electronic {name} sound with no speech.")]
        for i, (q, a) in enumerate(qa):
            rows.append({
                "id": f"{clip['id']}-{i}", "dataset": "test", "seed_description": md.get("transcript") or md["category"],
                "prompt": q, "response": a,
                "messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": f"<|AUDIO|>\n{q}",
                              "audios": [{"audio": ref, "text": md.get("transcript")}]}],
            })
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def loss_and_grads(model, batch: dict, states, reuse_head: bool):
    """One training forward + backward: (the model's output, the connector's gradients as one vector)."""
    import torch

    model.reuse_frozen_head = reuse_head
    out = model(audio_states=states, **batch)
    out.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.connector.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return out, grads
