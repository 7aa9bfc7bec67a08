"""The label stage's units of work: what one job needs (`LabelJob`), and the plan of units and batches.

A unit is an independent piece of work whose items become one output shard; units share nothing but
the response cache, so any worker may run any unit in any order (components/label/run.py).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.config import LabelConfig, ModelsConfig
from components.label import template
from components.label.backends import Backend, Request, expected_engine, make_backend
from components.label.cache import cache_key
from components.label.generator import Generator, resolve_generator
from components.label.pool import Instruction, Pool, draw, load_pool, restrict
from components.label.rows import row_id
from components.modeldir import local_dir

CACHE_DIR = "cache"
SEED_FIELDS = ("id", "dataset", "audio", "transcript", "seed_description", "kind")


@dataclass(frozen=True)
class Item:
    """One output row to produce: a clip and the instruction drawn for it."""

    row_id: str
    index: int
    seed: dict[str, Any]
    instruction: Instruction


@dataclass(frozen=True)
class Unit:
    """An independent piece of work: its items become shards/<name>.jsonl."""

    name: str
    items: tuple[Item, ...]


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
                 pool: Pool, cache_dir: Path, backend: Backend | None = None) -> None:
        self.out, self.cfg, self.generator, self.generator_dir = out, cfg, generator, generator_dir
        self.pool, self.cache_dir = pool, cache_dir
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
    generator = resolve_generator(models)
    gdir = local_dir(generator.name)
    pool = restrict(load_pool(Path(cfg.instructions) if cfg.instructions else None), cfg.kinds)
    cache = cache_dir or (Path(cfg.cache_dir) if cfg.cache_dir else out / CACHE_DIR)
    return LabelJob(out, cfg, generator, str(gdir) if gdir else None, pool, cache, backend)


def select_seeds(seeds: list[dict[str, Any]], cfg: LabelConfig) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Seed rows to label, in input order, and how many were skipped by which rule: `split` (no
    `split` field, or one listed in params) then `speaker_cap` (at most `max_clips_per_speaker`
    per speaker, the first ones in a per-(seed, clip) hash order; clips without a speaker are
    never capped)."""
    rows = [s for s in seeds if s.get("split") is None or s["split"] in cfg.splits]
    skipped = {"split": len(seeds) - len(rows), "speaker_cap": 0}
    if cfg.max_clips_per_speaker is None:
        return rows, skipped
    by_speaker: dict[str, list[dict[str, Any]]] = {}
    for s in rows:
        if s.get("speaker"):
            by_speaker.setdefault(s["speaker"], []).append(s)
    dropped: set[str] = set()
    for clips in by_speaker.values():
        ranked = sorted(clips, key=lambda s: hashlib.sha256(f"{cfg.seed}\x00{s['id']}".encode()).hexdigest())
        dropped |= {s["id"] for s in ranked[cfg.max_clips_per_speaker:]}
    skipped["speaker_cap"] = len(dropped)
    return [s for s in rows if s["id"] not in dropped], skipped


def plan_units(seeds: list[dict[str, Any]], job: LabelJob) -> list[Unit]:
    """Items in input order (k instructions per clip), cut into units of about `shard_rows` rows."""
    k = job.cfg.instructions_per_clip
    clips, job.skipped = select_seeds(seeds, job.cfg)
    per_unit = max(1, job.cfg.shard_rows // k)
    units = []
    for n, start in enumerate(range(0, len(clips), per_unit)):
        items = []
        for seed in clips[start : start + per_unit]:
            slim = {f: seed.get(f) for f in SEED_FIELDS}
            for j, ins in enumerate(draw(job.pool, slim, job.cfg.seed, k)):
                items.append(Item(row_id(seed["id"], j), j, slim, ins))
        units.append(Unit(f"label-{n:06d}", tuple(items)))
    return units


def plan_batches(requests: list[Request], length: Callable[[Request], int], batch_size: int) -> list[list[Request]]:
    """Length-bucketed batches: sort by (length, shared opening, key), cut every batch_size (see module doc);
    requests sharing an opening sit side by side."""
    unique = list({r.key: r for r in requests}.values())
    ordered = sorted(unique, key=lambda r: (length(r), r.shared, r.key))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
