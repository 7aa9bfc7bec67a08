"""Ingestion on real files: every quarantine reason from a real bad input, conversion, no-op re-runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.ingest import candidates as c
from components.ingest.aqa import prepare_aqa_jsonl
from components.ingest.decode import Limits
from components.ingest.directory import prepare_directory
from components.ingest.lhotse_source import prepare_lhotse
from components.ingest.run import MANIFEST, QUARANTINE, ingest
from components.records import read_jsonl
from components.audio import read_audio_ref

SPEECH = Path("/usr/share/asterisk/sounds/en_US_f_Allison/auth-thankyou.wav")  # 8 kHz, "Thank you."
LONGER = Path("/usr/share/asterisk/sounds/en_US_f_Allison/agent-pass.wav")
LIMITS = Limits(min_duration=0.3, max_duration=30.0, silence_dbfs=-60.0)


def _real(path: Path = SPEECH) -> tuple[np.ndarray, int]:
    return sf.read(str(path), dtype="float32")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A directory holding one real example of every kind of input the issue names."""
    d = tmp_path / "raw"
    d.mkdir()
    audio, sr = _real()
    long_audio, long_sr = _real(LONGER)
    shutil.copy(SPEECH, d / "plain.wav")
    stereo = np.stack([long_audio, long_audio * 0.5], axis=1)
    sf.write(d / "stereo24.wav", stereo, 44100, subtype="PCM_24")  # odd rate for this content
    sf.write(d / "u8.wav", audio, sr, subtype="PCM_U8")
    sf.write(d / "float32.wav", audio * 0.9, 22050, subtype="FLOAT")
    sf.write(d / "int32.flac", audio * 0.8, 11025, subtype="PCM_24")
    sf.write(d / "clip.ogg", audio * 0.7, sr, format="OGG", subtype="VORBIS")
    sf.write(d / "clip.mp3", audio * 0.6, sr, format="MP3", subtype="MPEG_LAYER_III")
    shutil.copy(SPEECH, d / "repeat-of-plain.wav")  # same bytes -> same content -> duplicate
    sf.write(d / "same-audio.flac", audio, sr, subtype="PCM_16")  # same samples, other format
    (d / "empty.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(b"RIFF\xff\xff\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    (d / "notes.txt").write_text("this is not audio\n")
    sf.write(d / "short.wav", audio[: sr // 20], sr)  # 0.05 s
    reps = int(35 * long_sr / len(long_audio)) + 1
    sf.write(d / "long.wav", np.tile(long_audio, reps), long_sr)  # > 30 s
    sf.write(d / "silent.wav", np.zeros(sr * 2, dtype=np.float32), sr)
    (d / "metadata.jsonl").write_text(
        json.dumps({"file": "plain.wav", "transcript": "Thank you.", "gender": "Female"}) + "\n"
        + json.dumps({"file": "../../../etc/passwd", "transcript": "escape"}) + "\n"
    )
    return d


def _run(cands, out: Path, **kw):
    return ingest(cands, out, LIMITS, shard_max_bytes=kw.pop("shard_max_bytes", 64 << 20), workers=2, show_progress=False)


def test_every_reason_from_real_files(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = _run(prepare_directory(corpus), out)
    manifest, quarantine = read_jsonl(out / MANIFEST), read_jsonl(out / QUARANTINE)
    by_name = {Path(r["source"]).name: r for r in manifest + quarantine}
    reasons = {name: r.get("reason", "accepted") for name, r in by_name.items()}
    assert reasons == {
        "plain.wav": "accepted",
        "stereo24.wav": "accepted",
        "u8.wav": "accepted",
        "float32.wav": "accepted",
        "int32.flac": "accepted",
        "clip.ogg": "accepted",
        "clip.mp3": "accepted",
        "repeat-of-plain.wav": c.DUPLICATE,
        "same-audio.flac": c.DUPLICATE,
        "empty.wav": c.EMPTY,
        "corrupt.wav": c.UNREADABLE,
        "notes.txt": c.NOT_AUDIO,
        "short.wav": c.TOO_SHORT,
        "long.wav": c.TOO_LONG,
        "silent.wav": c.SILENT,
        "passwd": c.OUTSIDE_ROOT,
    }
    # nothing lost: 15 files + 1 metadata row pointing outside = 16 inputs, each exactly once
    assert report.total == 16 == len(manifest) + len(quarantine)
    assert len({r["source"] for r in manifest + quarantine}) == 16
    plain_id = next(r["id"] for r in manifest if r["source"].endswith("plain.wav"))
    assert by_name["repeat-of-plain.wav"]["kept_id"] == plain_id
    assert by_name["same-audio.flac"]["kept_id"] == plain_id
    assert by_name["plain.wav"]["metadata"] == {"transcript": "Thank you.", "gender": "Female"}
    assert by_name["passwd"]["source"] == "../../../etc/passwd"  # as found, and never read
    assert "source_sha256" not in by_name["passwd"]


def test_conversion_to_16k_mono(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(prepare_directory(corpus), out)
    rows = {Path(r["source"]).name: r for r in read_jsonl(out / MANIFEST)}
    stereo = rows["stereo24.wav"]
    assert (stereo["original_sample_rate"], stereo["original_channels"], stereo["sample_rate"]) == (44100, 2, 16000)
    for row in rows.values():
        ref = f"out/{row['shard']}/{row['id']}.flac"
        data, sr = read_audio_ref(tmp_path, ref)
        assert sr == 16000 and data.ndim == 1
        assert abs(len(data) / sr - row["duration"]) < 1e-3
    src, src_sr = _real(LONGER)
    assert abs(stereo["duration"] - len(src) / 44100) < 1e-3  # written at 44.1 kHz above


def test_rerun_is_byte_identical_noop_and_additions_only_decode_new(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(prepare_directory(corpus), out)
    snapshot = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    again = _run(prepare_directory(corpus), out)
    assert again.decoded == 0 and again.reused == 16
    assert {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == snapshot

    audio, sr = _real(LONGER)
    sf.write(corpus / "new.wav", audio * 0.5, sr)
    third = _run(prepare_directory(corpus), out)
    assert third.decoded == 1 and third.total == 17 and third.accepted == 8
    for name in ("shard-000000.tar",):  # finished shards are never rewritten
        assert (out / "shards" / name).read_bytes() == snapshot[name]


def test_shards_are_bounded_and_deterministic(corpus: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _run(prepare_directory(corpus), a, shard_max_bytes=60_000)
    _run(prepare_directory(corpus), b, shard_max_bytes=60_000)
    shards = sorted((a / "shards").glob("*.tar"))
    assert len(shards) > 1
    for s in shards:
        assert s.read_bytes() == (b / "shards" / s.name).read_bytes()
    assert (a / MANIFEST).read_bytes() == (b / MANIFEST).read_bytes()


def test_aqa_jsonl_rejects_escapes_without_reading(corpus: Path, tmp_path: Path) -> None:
    rows = [
        {"id": "1", "dataset": "d", "messages": [{"role": "system", "content": "s"},
         {"role": "user", "content": "<|AUDIO|>\nq", "audios": [{"audio": "raw/plain.wav", "text": "Thank you."}]}]},
        {"id": "2", "dataset": "d", "messages": [{"role": "user", "content": "x", "audios": [{"audio": "../../etc/shadow"}]}]},
        {"id": "3", "dataset": "d", "messages": [{"role": "user", "content": "x", "audios": [{"audio": "/etc/hostname"}]}]},
        {"id": "4", "dataset": "d", "messages": [{"role": "user", "content": "x", "audios": [{"audio": "raw/missing.wav"}]}]},
        {"id": "5", "dataset": "d", "messages": "not a list"},
    ]
    jsonl = tmp_path / "aqa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken json\n")
    cands = prepare_aqa_jsonl(jsonl, data_root=tmp_path)
    report = _run(cands, tmp_path / "out")
    q = read_jsonl(tmp_path / "out" / QUARANTINE)
    assert report.accepted == 1 and report.total == 6
    assert {r["source"]: r["reason"] for r in q} == {
        "../../etc/shadow": c.OUTSIDE_ROOT,
        "/etc/hostname": c.OUTSIDE_ROOT,
        "raw/missing.wav": c.MISSING,
        f"{jsonl}:5": c.BAD_ROW,
        f"{jsonl}:6": c.BAD_ROW,
    }
    accepted = read_jsonl(tmp_path / "out" / MANIFEST)[0]
    assert accepted["source"] == "raw/plain.wav" and accepted["metadata"] == {"transcript": "Thank you."}


def test_lhotse_manifests(corpus: Path, tmp_path: Path) -> None:
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rec = Recording.from_file(corpus / "plain.wav", recording_id="plain")
    outside = Recording.from_file(SPEECH, recording_id="outside")  # absolute path outside the root
    RecordingSet.from_recordings([rec, outside]).to_file(tmp_path / "toy_recordings.jsonl.gz")
    SupervisionSet.from_segments([
        SupervisionSegment("s1", "plain", 0.0, rec.duration, text="Thank you.", speaker="allison", gender="F",
                           custom={"emotion": "Neutral"}),
    ]).to_file(tmp_path / "toy_supervisions.jsonl.gz")
    cands = prepare_lhotse(tmp_path / "toy_recordings.jsonl.gz", data_root=tmp_path)
    report = _run(cands, tmp_path / "out")
    assert report.accepted == 1 and dict(report.quarantined) == {c.OUTSIDE_ROOT: 1}
    row = read_jsonl(tmp_path / "out" / MANIFEST)[0]
    assert row["dataset"] == "toy"
    assert row["metadata"] == {"recording_id": "plain", "transcript": "Thank you.", "speaker": "allison",
                               "gender": "F", "emotion": "Neutral"}


def test_symlink_out_of_source_is_rejected(tmp_path: Path) -> None:
    d = tmp_path / "raw"
    d.mkdir()
    (d / "link.wav").symlink_to(SPEECH)
    cands = prepare_directory(d)
    assert [(x.reject, x.path) for x in cands] == [(c.OUTSIDE_ROOT, None)]
