"""Ingest under faults and bad input, as a user meets them: a disk that fills up (a real tmpfs), every
input rejected, a lhotse recipe's manifests that point outside the default data root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from components.cli import app
from components.config import apply_overrides
from components.ingest.run import MANIFEST, QUARANTINE, STATS
from tests.components.ingest.test_ingest import SPEECH
from tests.conftest import VENV_BIN

CLIPS = 60  # 2 s of noise each, ~3.5 MB of FLAC in 1 MB shards: a 1.6 MB filesystem fills in the second


@pytest.fixture()
def params(tmp_path: Path, repo: Path) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text((repo / "params.yaml").read_text())
    apply_overrides(p, ["tiny.ingest.shard_max_mb=1"])
    return p


def _noise(d: Path, n: int) -> Path:
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(d / f"noise-{i:03d}.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    return d


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_full_disk_is_one_line_leaves_nothing_half_written_and_a_rerun_matches(tmp_path: Path, params: Path) -> None:
    """`desta ingest` onto a tmpfs too small for its shards (a private mount namespace: `unshare`):
    exit 1 with one error line naming the disk and what to do, no traceback, no temp file, no shard that
    no manifest names; after the filesystem grows, the re-run's outputs equal an uninterrupted run's."""
    src, out, copy = _noise(tmp_path / "src", CLIPS), tmp_path / "out", tmp_path / "copy"
    out.mkdir()
    copy.mkdir()
    ingest = f'"{VENV_BIN / "desta"}" ingest --source "{src}" --params "{params}" --no-track --out "{out}"'
    script = f"""
        mount -t tmpfs -o size=1600k tmpfs "{out}" || exit 99
        {ingest} > "{tmp_path}/full.log" 2>&1; echo $? > "{tmp_path}/full.rc"
        (cd "{out}" && find . -type f | sort) > "{tmp_path}/full.files"
        mount -o remount,size=64m "{out}"
        {ingest} > "{tmp_path}/rerun.log" 2>&1; echo $? > "{tmp_path}/rerun.rc"
        cp -a "{out}/." "{copy}/"
    """
    env = {**os.environ, "COLUMNS": "400"}
    res = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    log = (tmp_path / "full.log").read_text()
    assert (tmp_path / "full.rc").read_text().strip() == "1", log
    assert "Traceback" not in log and log.count("error:") == 1, log
    assert "No space left on device" in log and str(out) in log and "re-run" in log, log
    left = (tmp_path / "full.files").read_text().split()
    assert not [f for f in left if f.endswith(".tmp") or "/." in f], left  # no temp file of any writer
    assert not [f for f in left if "shard-" in f], left  # the shards closed before the failure went too
    assert MANIFEST not in " ".join(left)  # nothing that reads as a finished ingest

    assert (tmp_path / "rerun.rc").read_text().strip() == "0", (tmp_path / "rerun.log").read_text()
    clean = tmp_path / "clean"
    ok = CliRunner().invoke(app, ["ingest", "--source", str(src), "--params", str(params), "--no-track", "--out", str(clean)])
    assert ok.exit_code == 0, ok.output
    got, want = _outputs(copy), _outputs(clean)
    assert sum(k.startswith("shards/") for k in want) >= 2  # the failure came after a shard had closed
    assert got == want


def test_every_input_rejected_fails_with_counts_and_reasons(tmp_path: Path, params: Path) -> None:
    """Nothing to pass on: exit 1 naming the counts and the top reasons (the flow and `dvc repro` stop);
    the quarantine rows are written all the same."""
    src = tmp_path / "junk"
    src.mkdir()
    (src / "notes.txt").write_text("not audio\n")
    (src / "empty.wav").write_bytes(b"")
    sf.write(src / "silent.wav", np.zeros(32000, dtype=np.float32), 16000)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["ingest", "--source", str(src), "--params", str(params), "--no-track", "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "accepted 0 of 3 inputs" in res.output and "Top reasons" in res.output and "Traceback" not in res.output
    quarantined = [json.loads(x) for x in (out / QUARANTINE).read_text().splitlines()]
    assert len(quarantined) == 3 and all(q["reason"] in res.output for q in quarantined)


def test_min_accepted_fraction(tmp_path: Path, params: Path) -> None:
    """One good clip of three: below tiny's ingest.min_accepted_fraction 0.5; enough at 0 (any accepted)."""
    src = tmp_path / "mixed"
    src.mkdir()
    shutil.copy(SPEECH, src / "speech.wav")
    (src / "empty.wav").write_bytes(b"")
    (src / "notes.txt").write_text("not audio\n")
    args = ["ingest", "--source", str(src), "--params", str(params), "--no-track", "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "accepted 1 of 3 inputs (ingest.min_accepted_fraction 0.5)" in res.output
    apply_overrides(params, ["tiny.ingest.min_accepted_fraction=0"])
    assert CliRunner().invoke(app, args).exit_code == 0


def _lhotse_recipe(tmp_path: Path) -> tuple[Path, Path]:
    """What a lhotse recipe writes: audio under the corpus folder, manifests with absolute paths elsewhere."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    corpus, manifests = tmp_path / "corpora" / "toy", tmp_path / "manifests"
    corpus.mkdir(parents=True)
    manifests.mkdir()
    recs, sups = [], []
    for i, gain in enumerate((1.0, 0.5)):
        audio, sr = sf.read(str(SPEECH), dtype="float32")
        sf.write(corpus / f"utt{i}.wav", audio * gain, sr)
        rec = Recording.from_file(corpus / f"utt{i}.wav", recording_id=f"utt{i}")
        recs.append(rec)
        sups.append(SupervisionSegment(f"s{i}", rec.id, 0.0, rec.duration, text="Thank you.", speaker="allison"))
    RecordingSet.from_recordings(recs).to_file(manifests / "toy_recordings_train.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(manifests / "toy_supervisions_train.jsonl.gz")
    return corpus, manifests / "toy_recordings_train.jsonl.gz"


def test_lhotse_recipe_outside_default_root_stops_before_decoding(tmp_path: Path, params: Path) -> None:
    """No data root given: one error naming --data-root, the params key and the folder the manifest
    points at, before anything is decoded; with --data-root (or ingest.data_root) it ingests with the
    transcripts. An explicit root stays the trust boundary: recordings outside it are quarantined."""
    corpus, manifest = _lhotse_recipe(tmp_path)
    out = tmp_path / "out"
    base = ["ingest", "--source", str(manifest), "--params", str(params), "--no-track", "--out", str(out)]
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 1 and "Traceback" not in res.output
    flat = " ".join(res.output.split())
    assert f"--data-root {corpus}" in flat and "ingest.data_root" in flat and "2 of 2 recordings" in flat, flat
    assert not (out / MANIFEST).exists() and not (out / "shards").exists()

    res = CliRunner().invoke(app, [*base, "--data-root", str(corpus)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]
    assert [r["metadata"]["transcript"] for r in rows] == ["Thank you.", "Thank you."]
    assert {r["metadata"]["recording_id"] for r in rows} == {"utt0", "utt1"}

    apply_overrides(params, [f"tiny.ingest.data_root={corpus}"])
    assert CliRunner().invoke(app, base).exit_code == 0
    elsewhere = CliRunner().invoke(app, [*base, "--data-root", str(tmp_path / "manifests")])
    assert elsewhere.exit_code == 1 and "outside_data_root 2" in elsewhere.output
    assert json.loads((out / STATS).read_text())["quarantined_by_reason"] == {"outside_data_root": 2}


def test_a_damaged_earlier_manifest_is_one_line_saying_what_to_remove(tmp_path: Path, params: Path) -> None:
    """Ingest reuses its earlier manifest rows; when that manifest was damaged from outside (a torn copy),
    the re-run stops in one line naming the file, its line and what to remove; after that, the outputs
    equal the first run's."""
    src, out = _noise(tmp_path / "src", 4), tmp_path / "out"
    args = ["ingest", "--source", str(src), "--params", str(params), "--no-track", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    want = _outputs(out)
    manifest = out / MANIFEST
    manifest.write_text(manifest.read_text() + '{"source": "cut-off\n')
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "Traceback" not in res.output and res.output.count("error:") == 1, res.output
    assert f"{manifest}:5: not a JSON line" in res.output and f"remove {out}" in res.output, res.output
    shutil.rmtree(out)
    assert CliRunner().invoke(app, args).exit_code == 0
    got = _outputs(out)
    assert {k: v for k, v in got.items() if k != STATS} == {k: v for k, v in want.items() if k != STATS}
