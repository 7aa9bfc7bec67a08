"""`desta seeds`: a seed description for every accepted clip, in JSONL shards, plus a report."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from components import measure as A
from components.atomic import atomic_dir, atomic_write_text, clear_temps, named
from components.audio import audio_ref, read_audio_ref
from components.config import SeedsConfig
from components.measure import looks_like_speech
from components.progress import progress_bar
from components.records import MANIFEST, SEED_SHARD_DIR, clip_member, iter_jsonl, rewrite
from components.seeds.attributes import SCALES, EdgeFitter, attributes, fixed_edges, signal_values
from components.seeds.describe import music_description, sound_description, speech_description
from components.seeds.learnability import ClipPicker, ProbeSpec, learnability
from components.seeds.split import assign_splits
from components.model.transcribe import Engine, make_transcriber
from components.text import wer

REPORT = "report.json"


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
                     engine: Engine | None = None) -> ChunkResult:
    """Whisper's greedy text of each clip reference (read from the job's data root), by `engine` or this
    process's engine for the job."""
    clips = [read_audio_ref(Path(job.data_root), r)[0] for r in refs]
    engine = engine or job.worker_engine()
    return ChunkResult(engine.engine, engine(clips, on_batch=on_batch))


def run_in_process(chunks: list[list[str]], job: WhisperJob, advance: Callable[[int], None]) -> list[ChunkResult]:
    """One engine for this call (freed after it: a long-lived process keeps no model), chunk after chunk."""
    engine = job.load() if chunks else None
    return [transcribe_chunk(c, job, advance, engine) for c in chunks]


def whisper_chunks(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Positions by clip length cut into chunks of whole batches: each chunk's batches are exactly the
    batches one pass over all clips would make, so the text is the same however the chunks run."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = batch_size * CHUNK_BATCHES
    return [order[i : i + size] for i in range(0, len(order), size)]


def _local(model: str | Path) -> str:
    """A local model dir as an absolute path (workers may start elsewhere); a hub id as it is."""
    return str(Path(model).absolute()) if Path(model).exists() else str(model)  # links kept: `<dir>-ct2` is a sibling link


class Heard(NamedTuple):
    """What the passes over a clip keep for the later ones (the samples are not kept): its reference,
    measurements and length, and, once Whisper has run, whether it is speech and its `signal_values`
    (None for a sound) -- the speech check and syllable count run once a clip."""

    ref: str
    measured: A.Measured
    samples: int
    signal: dict[str, float | None] | None = None


def _transcript(row: dict[str, Any], whisper_text: str | None) -> str:
    """The metadata's transcript first, else Whisper's."""
    return row["metadata"].get("transcript") or whisper_text or ""


def _signal(row: dict[str, Any], heard: Heard, whisper_text: str | None) -> dict[str, float | None] | None:
    """A speech clip's `signal_values`; None for a sound (the metadata's kind first, else Whisper's words)."""
    transcript = _transcript(row, whisper_text)
    kind = row["metadata"].get("kind") or ("speech" if looks_like_speech(transcript, heard.measured.voiced_seconds) else "sound")
    return signal_values(heard.measured, transcript) if kind == "speech" else None


def _seed_row(
    row: dict[str, Any], heard: Heard, whisper_text: str | None, edges: dict[str, list[float]], model_text: str
) -> dict[str, Any]:
    """The seed row of one manifest row (without its split): metadata first, else measured, else Whisper;
    the measurable attributes always from the signal (components/seeds/attributes.py). `model_text` (the
    `seeds.model_text` setting) picks the text its training rows give the model beside the audio."""
    m, meta = heard.measured, row["metadata"]
    given = meta.get("transcript")
    kind = "speech" if heard.signal is not None else "music" if meta.get("kind") == "music" else "sound"
    transcript = _transcript(row, whisper_text) if kind == "speech" else None
    if heard.signal is not None:
        attrs = attributes(meta, m, heard.signal, edges)
        desc = speech_description(m.duration, transcript, {k: v["value"] for k, v in attrs.items()})
    elif kind == "music":
        attrs = music_attributes(meta)
        desc = music_description(m.duration, {k: v["value"] for k, v in attrs.items()})
    else:
        attrs = {"Audio category": {"value": str(meta.get("category", "unknown")), "source": "metadata" if meta.get("category") else "unknown"}}
        desc = sound_description(m.duration, attrs["Audio category"]["value"])
    return {
        "id": row["id"],
        "dataset": row["dataset"],
        "audio": heard.ref,
        "transcript": transcript or None,
        "seed_description": desc,
        "kind": kind,
        "speaker": meta.get("speaker"),
        "transcript_source": ("metadata" if given else "whisper") if kind == "speech" else None,
        "whisper_transcript": whisper_text,
        "model_text": (whisper_text if model_text == "whisper" else transcript) or None,
        "attributes": attrs,
        "measured": {"pitch_hz": m.pitch_hz, "loudness_db": m.loudness_db, "voiced_seconds": m.voiced_seconds,
                     "duration": m.duration},
        "synth": meta.get("synth"),
    }


def music_attributes(meta: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A music clip's instrument family, register and tempo: set by construction (the rendering plan,
    components/ingest/music.py), so they are what is heard."""
    plan = meta.get("music") or {}
    named = {"Instrument": plan.get("family"), "Pitch register": plan.get("register"), "Tempo": plan.get("tempo")}
    return {name: {"value": str(value), "source": "metadata"} for name, value in named.items() if value}


def _rows(manifest: Path) -> Iterator[dict[str, Any]]:
    return iter_jsonl(manifest, rewrite("`desta ingest`"))


def _count_rows(manifest: Path) -> int:
    with manifest.open("rb") as f:
        return sum(1 for line in f if line.strip())


def build_seeds(
    manifest_dir: Path,
    data_root: Path,
    out_dir: Path,
    whisper_dir: str | Path,
    cfg: SeedsConfig,
    test_fraction: float = 0.2,
    show_progress: bool = True,
    map_chunks: MapChunks = run_in_process,
    probe: ProbeSpec | None = None,
) -> dict[str, Any]:
    """Write seed rows for every clip in manifest_dir/manifest.jsonl; returns the report. Whisper's
    chunks run through `map_chunks` (default: here, one after another; flows/seeds.py: as tasks).

    The manifest is read four times, streaming (measure, fit edges, split, write): between the passes a
    reference, the measurements, the length and (after Whisper) the signal values of each clip are kept, and
    Whisper's text of the clips it heard; never
    a clip's audio after it is measured, nor every seed row (7,000 hours of audio are ~1.6 TB as samples)."""
    manifest = manifest_dir / MANIFEST
    total = _count_rows(manifest) if manifest.is_file() else 0
    if not total:
        raise ValueError(f"no clips in {manifest}: run `desta ingest` first")
    heard: list[Heard] = []
    # Whisper hears clips without a given transcript, and a sample of the others for the WER report (the
    # first `report_clips_per_dataset` by content id per dataset, so the sample is stable); every clip
    # with `model_text: whisper`.
    need: list[int] = []
    given: dict[str, list[tuple[str, int]]] = {}
    k = cfg.report_clips_per_dataset
    with progress_bar("seeds: measure", total=total, enabled=show_progress, unit="clips") as advance:
        for i, row in enumerate(_rows(manifest)):
            ref = audio_ref(manifest_dir, data_root, row)
            data, _ = read_audio_ref(data_root, ref)
            heard.append(Heard(ref, A.measure(torch.from_numpy(data)), len(data)))
            if row["metadata"].get("transcript"):
                sample = given.setdefault(row["dataset"], [])
                sample.append((row["id"], i))
                if len(sample) > 4 * k + 64:  # keep the k smallest ids only
                    sample.sort()
                    del sample[k:]
            elif row["metadata"].get("kind") not in ("sound", "music"):
                need.append(i)
            if cfg.model_text == "whisper":
                need.append(i)  # every clip: the model reads Whisper's text beside each in training too
            advance(1)
    need = sorted(set(need + [i for sample in given.values() for _, i in sorted(sample)[:k]]))
    job = WhisperJob(cfg.engine, _local(whisper_dir), cfg.whisper_batch_size, str(Path(data_root).absolute()))
    chunks = whisper_chunks([heard[i].samples for i in need], cfg.whisper_batch_size)
    with progress_bar("seeds: whisper", total=len(need), enabled=show_progress, unit="clips") as advance:
        done = map_chunks([[heard[need[c]].ref for c in chunk] for chunk in chunks], job, advance)
    whisper = {need[c]: text for chunk, result in zip(chunks, done) for c, text in zip(chunk, result.texts)}
    engine = done[0].engine if done else job.load().engine

    def first_pass() -> Iterator[tuple[dict[str, Any], Heard, str | None]]:
        """The manifest's rows again, each with what the first pass heard and Whisper's text."""
        changed = ValueError(f"{manifest} changed while `desta seeds` read it: re-run when ingest is done")
        n = 0
        for n, row in enumerate(_rows(manifest), 1):
            if n > len(heard) or not heard[n - 1].ref.endswith("/" + clip_member(row["id"])):  # no path resolving per row
                raise changed
            yield row, heard[n - 1], whisper.get(n - 1)
        if n != len(heard):
            raise changed

    fitter = EdgeFitter()
    for i, (row, h, text) in enumerate(first_pass()):
        heard[i] = h._replace(signal=_signal(row, h, text))
        if heard[i].signal is not None:
            fitter.add(heard[i].signal)
    edges = fitter.edges(fixed_edges(cfg))

    def seed_rows() -> Iterator[dict[str, Any]]:
        return (_seed_row(row, h, text, edges, cfg.model_text) for row, h, text in first_pass())

    splits = assign_splits(seed_rows(), test_fraction, cfg.split_seed)
    report, picker = Report(edges), ClipPicker(probe.clips if probe else 0)
    _write_shards(out_dir, (picker.add(report.add(row | {"split": split})) for row, split in zip(seed_rows(), splits)),
                  cfg.shard_rows)
    report_doc = report.result() | {"whisper_engine": engine}  # e.g. ct2/float32
    if probe:
        picked = picker.picked()
        with progress_bar("seeds: probe", total=len(picked), enabled=show_progress, unit="clips") as advance:
            report_doc["learnability"] = learnability(picked, probe.states(Path(data_root)), probe.layers, advance)
    atomic_write_text(out_dir / REPORT, json.dumps(report_doc, indent=2, sort_keys=True) + "\n")
    return report_doc


def seeds_for_profile(prof: Any, ingested: Path, out: Path, show_progress: bool = True,
                      map_chunks: MapChunks = run_in_process) -> dict[str, Any]:
    """`build_seeds` with what the profile decides: one call for `desta seeds` and the fanned-out flow."""
    return build_seeds(ingested, Path(prof.data.root), out, prof.models.whisper, prof.seeds,
                       prof.evaluate.heldout_fraction, show_progress, map_chunks, ProbeSpec.from_profile(prof))


def _write_shards(out_dir: Path, rows: Iterable[dict[str, Any]], shard_rows: int) -> None:
    """Every shard into a temp dir that replaces the shard dir in one rename: a reader sees the old set or
    the new one, never a mix or a part (a full disk or a kill mid-write leaves the old set). `rows` may
    stream: one shard's text is held at a time."""
    clear_temps(out_dir)
    with atomic_dir(out_dir / SEED_SHARD_DIR) as tmp:
        batch: list[str] = []
        for n, row in enumerate(rows):
            batch.append(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
            if len(batch) == shard_rows:
                _write_shard(tmp / f"seeds-{n // shard_rows:06d}.jsonl", batch, out_dir)
                batch = []
        if batch:
            _write_shard(tmp / f"seeds-{n // shard_rows:06d}.jsonl", batch, out_dir)


def _write_shard(path: Path, lines: list[str], out_dir: Path) -> None:
    try:
        path.write_text("".join(lines))
    except OSError as err:
        raise named(err, out_dir / SEED_SHARD_DIR) from err


class Report:
    """The seeds report from the rows as they stream past (`add`): counts, Whisper WER on the clips with a
    known transcript (a sample per dataset), the attributes' edges and words, and how often the metadata's
    word agrees with the signal's (components/seeds/attributes.py)."""

    def __init__(self, edges: dict[str, list[float]]) -> None:
        self.edges = edges
        self.kinds: Counter[str] = Counter()
        self.splits: Counter[str] = Counter()
        self.known: dict[str, tuple[list[str], list[str]]] = {}  # dataset -> (truths, Whisper's texts)
        self.words: dict[str, Counter[str]] = {}  # attribute -> word -> speech clips
        self.agree: dict[str, list[int]] = {}  # attribute -> [agree, n]

    def add(self, r: dict[str, Any]) -> dict[str, Any]:
        """Count one row; returns it (so a writer's stream can pass through)."""
        self.kinds[r["kind"]] += 1
        self.splits[r["split"]] += 1
        if r["transcript_source"] == "metadata" and r["whisper_transcript"] is not None:
            truths, heard = self.known.setdefault(r["dataset"], ([], []))
            truths.append(r["transcript"])
            heard.append(r["whisper_transcript"])
        if r["kind"] in ("speech", "music"):
            for name, a in r["attributes"].items():
                self.words.setdefault(name, Counter())[a["value"]] += 1
                other = a.get("metadata") or a.get("signal")
                if other:
                    counts = self.agree.setdefault(name, [0, 0])
                    counts[0] += other == a["value"]
                    counts[1] += 1
        return r

    def result(self) -> dict[str, Any]:
        return {
            "clips": sum(self.kinds.values()),
            "speech": self.kinds.get("speech", 0),
            "sound": self.kinds.get("sound", 0),
            "music": self.kinds.get("music", 0),
            "split": dict(sorted(self.splits.items())),
            "whisper_wer_on_known_transcripts": {ds: {"wer": round(wer(t, h), 4), "n": len(t)}
                                                 for ds, (t, h) in sorted(self.known.items())},
            "attribute_edges": {name: {"edges": e, "unit": SCALES[name].unit} for name, e in self.edges.items()},
            "attribute_words": {name: dict(sorted(c.items())) for name, c in sorted(self.words.items())},
            "metadata_vs_signal": {name: {"agree": round(a / n, 4), "n": n} for name, (a, n) in sorted(self.agree.items())},
        }
