"""The label stage's units of work: what one job needs (`LabelJob`), and the plan of units and batches.

A unit is an independent piece of work whose items become one output shard; units share nothing but
the response cache, so any worker may run any unit in any order (components/label/run.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from components.config import LabelConfig, ModelsConfig
from components.label import template
from components.label.backends import Backend, Request, expected_engine, make_backend
from components.label.cache import cache_key
from components.label.generator import Generator, resolve_generator
from components.label.pool import Instruction, Pool, draw, draw_more, load_pool, restrict
from components.label.rows import REQUIRED_SEED_KEYS, row_id
from components.modeldir import local_dir
from components.records import DamagedFile, rewrite, seed_files

CACHE_DIR = "cache"
SEED_FIELDS = ("id", "dataset", "audio", "transcript", "seed_description", "kind")
OPTIONAL_SEED_FIELDS = ("model_text",)  # absent from seeds written before `seeds.model_text` (rows.model_text)


@dataclass(frozen=True)
class Item:
    """One output row to produce: a clip and the instruction drawn for it."""

    row_id: str
    index: int
    seed: dict[str, Any]
    instruction: Instruction


@dataclass(frozen=True)
class Unit:
    """An independent piece of work: the seed rows at `lines` (a seed file and the byte offsets of its rows
    there, packed), `instructions_per_clip` items each, become shards/<name>.jsonl. Only these references
    travel to a worker, which reads its own rows (`seeds`): no process holds every seed row."""

    name: str
    lines: tuple[tuple[str, bytes], ...]
    clips: int
    size: int  # items: clips x instructions_per_clip (+ label.more_draws where they fit)

    def seeds(self) -> Iterator[dict[str, Any]]:
        """The unit's seed rows (SEED_FIELDS and those of OPTIONAL_SEED_FIELDS they have), in input order."""
        for path, packed in self.lines:
            with open(path, "rb") as f:
                for offset in array("q", packed):
                    f.seek(offset)
                    line = f.readline()
                    try:
                        seed = json.loads(line)
                    except json.JSONDecodeError:
                        raise DamagedFile(f"{path}: the seed row at byte {offset} changed since the label plan",
                                          rewrite("`desta seeds`")) from None
                    yield {f: seed.get(f) for f in SEED_FIELDS} | {f: seed[f] for f in OPTIONAL_SEED_FIELDS if f in seed}


@dataclass
class UnitResult:
    name: str
    rows: int = 0
    requests: int = 0
    cache_hits: int = 0
    generated: int = 0
    generated_by_attempt: list[int] = field(default_factory=list)
    filtered_by_reason: dict[str, int] = field(default_factory=dict)
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    trimmed: int = 0  # answers that hit the token limit, kept up to their last full sentence
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generate_seconds: float = 0.0
    # Kept rows per asked attribute value ("Gender=Female"): a labeller that favours one answer
    # (SmolLM2 picks the first option of "male or female?") shows up here as a skew (#7).
    rows_by_asked_value: dict[str, int] = field(default_factory=dict)
    # Kept answers per attribute value they state as the seed does ("Pitch=High"), whatever was asked:
    # how many training targets teach each word.
    rows_by_stated_value: dict[str, int] = field(default_factory=dict)
    choice_rows: int = 0  # of `rows`: choice-format copies (label.choice_rows)
    process: str = ""  # host:pid that ran the unit
    process_loads: int = 0  # backends the unit's job loaded in that process by the unit's end

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_WORKER_BACKENDS: dict[tuple, Backend] = {}  # this process's backends, when it is a cluster worker


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LabelJob:
    """What every unit needs; picklable (the backend is loaded lazily in each worker)."""

    def __init__(self, out: Path, cfg: LabelConfig, generator: Generator, generator_dir: str | None,
                 pool: Pool, cache_dir: Path, backend: Backend | None = None, more_pool: Pool | None = None) -> None:
        self.out, self.cfg, self.generator, self.generator_dir = out, cfg, generator, generator_dir
        self.pool, self.more_pool, self.cache_dir = pool, more_pool, cache_dir  # more_pool: label.more_draws' kinds
        self._backend = backend
        self._owns_backend = backend is None
        self._lock = threading.Lock()  # units on a thread runner share one backend
        self._in_worker = False  # set on the copies a cluster worker unpickles
        self.loads = 0  # backends this job (or this copy of it) loaded: label stats count them per process
        self.engine = backend.engine if backend is not None else expected_engine(cfg, generator_dir)
        self.skipped: dict[str, int] = {}  # seeds left out by `select_seeds`, counted once by `plan_units`

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_backend"], state["_owns_backend"], state["loads"] = None, True, 0
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._in_worker = True  # a copy on a cluster worker: the worker's one backend serves every unit

    def backend(self) -> Backend:
        """The backend, loaded on first use: a run that is all cache hits never loads a model. On a cluster
        worker (a copy of the job per task) it is loaded once per worker process and kept for its tasks."""
        with self._lock:
            if self._backend is None:
                key = (self.cfg.model_dump_json(), self.generator.name, self.generator_dir, self.engine)
                backend = _WORKER_BACKENDS.get(key) if self._in_worker else None
                if backend is None:
                    backend = make_backend(self.cfg, self.generator.name, self.generator_dir)
                    self.loads += 1
                    if backend.engine != self.engine:
                        raise RuntimeError(f"backend engine {backend.engine!r} != expected {self.engine!r}")
                    if self._in_worker:
                        _WORKER_BACKENDS[key] = backend
                        self._owns_backend = False  # the worker's: outlives this task
                self._backend = backend
            return self._backend

    def backend_stats(self) -> dict[str, int]:
        return dict(self._backend.stats) if self._backend is not None else {}

    def close(self) -> None:
        if self._backend is not None and self._owns_backend:
            self._backend.close()
            self._backend = None

    def items(self, unit: Unit) -> list[Item]:
        """The unit's output rows to produce: k instructions drawn per clip (seeded per clip), then the clip's
        `label.more_draws` ones (indices k, k+1, ...)."""
        k = self.cfg.instructions_per_clip
        items = []
        for seed in unit.seeds():
            drawn = draw(self.pool, seed, self.cfg.seed, k)
            if self.more_pool is not None:
                drawn += draw_more(self.more_pool, seed, self.cfg.seed, self.cfg.more_draws, drawn)
            items += [Item(row_id(seed["id"], j), j, seed, ins) for j, ins in enumerate(drawn)]
        return items

    def decoding(self, item: Item, attempt: int) -> dict[str, Any]:
        """Decoding params of one attempt (all of them go into the cache key).

        Greedy keys leave out top_p and seed, so changing those regenerates only sampled rows.
        """
        cfg = self.cfg
        temp = cfg.temperature if attempt == 0 else max(cfg.temperature, cfg.retry_temperature)
        dec: dict[str, Any] = {"engine": self.engine, "max_new_tokens": cfg.max_new_tokens, "temperature": temp}
        if temp > 0:
            digest = hashlib.sha256(f"{cfg.seed}\x00{item.row_id}\x00{attempt}".encode()).hexdigest()
            dec |= {"top_p": cfg.top_p, "seed": int(digest[:8], 16)}
        return dec

    def request(self, item: Item, attempt: int) -> Request:
        dec = self.decoding(item, attempt)
        key = cache_key(item.seed["seed_description"], item.instruction.text, self.generator.digest,
                        template.TEMPLATE_DIGEST, dec)
        msgs = template.generator_messages(item.seed["seed_description"], item.instruction.text)
        return Request(key, tuple(msgs), self.cfg.max_new_tokens, dec["temperature"], dec.get("top_p", 1.0),
                       dec.get("seed"), template.shared_text(item.seed["seed_description"]))


def prepare_job(out: Path, cfg: LabelConfig, models: ModelsConfig, cache_dir: Path | None = None,
                backend: Backend | None = None) -> LabelJob:
    """Resolve the generator (digest; warns if not the backbone), the pool and the cache dir."""
    full = load_pool(Path(cfg.instructions) if cfg.instructions else None)
    if unknown := sorted(set(cfg.more_draws) - {i.kind for i in full.instructions}):
        raise ValueError(f"label.more_draws: {unknown} not in the pool {full.path}")
    pool = restrict(full, cfg.kinds)
    more_pool = restrict(full, list(cfg.more_draws)) if cfg.more_draws else None
    generator = resolve_generator(models)
    gdir = local_dir(generator.name)
    cache = cache_dir or (Path(cfg.cache_dir) if cfg.cache_dir else out / CACHE_DIR)
    return LabelJob(out, cfg, generator, str(gdir) if gdir else None, pool, cache, backend, more_pool)


def select_seeds(seeds: Iterable[dict[str, Any]], cfg: LabelConfig) -> tuple[array, dict[str, int]]:
    """Positions of the seed rows to label, in input order, and how many were skipped by which rule: `split`
    (no `split` field, or one listed in params) then `speaker_cap` (at most `max_clips_per_speaker` per
    speaker, the first ones in a per-(seed, clip) hash order; clips without a speaker are never capped).
    `seeds` may stream: a position per row and a digest per capped speaker's clip are all that is kept."""
    kept, n = array("q"), 0
    by_speaker: dict[str, list[tuple[bytes, int]]] = {}
    for n, s in enumerate(seeds, 1):
        if s.get("split") is None or s["split"] in cfg.splits:
            kept.append(n - 1)
            if cfg.max_clips_per_speaker is not None and s.get("speaker"):
                # the raw digest sorts as its hex form did
                by_speaker.setdefault(s["speaker"], []).append(
                    (hashlib.sha256(f"{cfg.seed}\x00{s['id']}".encode()).digest(), n - 1))
    skipped = {"split": n - len(kept), "speaker_cap": 0}
    if cfg.max_clips_per_speaker is None:
        return kept, skipped
    dropped = {i for clips in by_speaker.values() for _, i in sorted(clips)[cfg.max_clips_per_speaker:]}
    skipped["speaker_cap"] = len(dropped)
    return array("q", (i for i in kept if i not in dropped)), skipped


def _read_seeds(seeds: Path, offsets: list[tuple[str, array]]) -> Iterator[dict[str, Any]]:
    """Seed rows of a seeds dir or JSONL file, checked (the fields a label row needs, unique ids); each row's
    file and byte offset are appended to `offsets` as it is read."""
    if not seeds.exists():
        raise FileNotFoundError(f"seeds not found: {seeds}")
    seen: set[str] = set()
    for path in seed_files(seeds):
        where = array("q")
        offsets.append((str(path.absolute()), where))
        with path.open("rb") as f:
            pos = 0
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise DamagedFile(f"{path}:{n}: not a JSON line ({err.msg}, column {err.colno})",
                                          rewrite("`desta seeds`")) from None
                    missing = [k for k in REQUIRED_SEED_KEYS if not isinstance(row.get(k), str) or not row[k]]
                    if missing:
                        raise ValueError(f"{path}:{n}: seed row lacks {', '.join(missing)}")
                    if row["id"] in seen:
                        raise ValueError(f"{path}:{n}: duplicate seed id {row['id']!r}")
                    seen.add(row["id"])
                    where.append(pos)
                    yield row
                pos += len(line)


def plan_units(seeds: Path, job: LabelJob) -> list[Unit]:
    """The seed rows of `seeds` (a seeds dir or a JSONL file) chosen by `select_seeds`, in input order, cut
    into units of about `shard_rows` rows (k instructions per clip, and `more_draws`). Read once, streaming
    (with `more_draws`, each unit's rows once more to count its items)."""
    k = job.cfg.instructions_per_clip
    offsets: list[tuple[str, array]] = []
    kept, job.skipped = select_seeds(_read_seeds(seeds, offsets), job.cfg)
    if not kept and not sum(job.skipped.values()):
        raise ValueError(f"no seed rows in {seeds}: run `desta seeds` first")
    per_unit = max(1, job.cfg.shard_rows // (k + sum(job.cfg.more_draws.values())))
    units, lines, clips, file, base = [], [], 0, 0, 0  # base: the position of the first row of `file`

    def cut(picked: array) -> None:
        if picked:
            lines.append((offsets[file][0], picked.tobytes()))

    picked = array("q")
    for position in kept:
        while position >= base + len(offsets[file][1]):
            cut(picked)
            picked, base, file = array("q"), base + len(offsets[file][1]), file + 1
        picked.append(offsets[file][1][position - base])
        clips += 1
        if clips == per_unit:
            cut(picked)
            units.append(Unit(f"label-{len(units):06d}", tuple(lines), clips, clips * k))
            picked, lines, clips = array("q"), [], 0
    cut(picked)
    if clips:
        units.append(Unit(f"label-{len(units):06d}", tuple(lines), clips, clips * k))
    if job.more_pool is not None:  # more draws only where their kind fits a clip: count them
        units = [replace(u, size=len(job.items(u))) for u in units]
    return units


def plan_batches(requests: list[Request], length: Callable[[Request], int], batch_size: int) -> list[list[Request]]:
    """Length-bucketed batches: sort by (length, shared opening, key), cut every batch_size (see module doc);
    requests sharing an opening sit side by side."""
    unique = list({r.key: r for r in requests}.values())
    ordered = sorted(unique, key=lambda r: (length(r), r.shared, r.key))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
