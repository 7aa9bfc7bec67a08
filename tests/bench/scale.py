"""Scale by simulation: DeSTA-AQA5M-shaped metadata at any size, pushed through every metadata path.

    python -m tests.bench.scale prepare N DIR    # the synthetic corpus of N clips / rows under DIR
    python -m tests.bench.scale run PATH DIR      # one path on it; prints {"seconds", "peak_mb", ...}
    python -m tests.bench.scale before PATH DIR   # the same path as of BASELINE (where it was changed)

Each `run` is its own process, so its peak RSS is the path's own (minus the RSS after imports). Audio is
never read: references are fake, texts have real lengths (transcripts ~14 words, answers ~45, seed
descriptions in the seeds stage's own format). The label path answers with a canned backend (an LLM
cannot make 10^6 answers here); everything around it — planning, cache keys, sqlite lookups, filters,
shards, stats — is the stage's own code.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
BASELINE = "24ce9cc"  # main before the scale fixes: question building and tokenisation as they were
INGEST_BASELINE = "ce6b2ce"  # main before ingest streamed: every candidate, row and clip held at once
PER_SHARD = 1000  # rows per synthetic shard (seed shards, label rows)
TINY = b"not audio: the re-run reuses rows by the bytes' digest and never decodes"


def _pool() -> list[str]:
    """The instructions the label stage draws from (a training row's prompt is one of them)."""
    return [json.loads(line)["text"] for line in (REPO / "components/label/data/instructions.jsonl").read_text().splitlines()]


def _words() -> list[str]:
    return sorted({w.strip(".,?!\"'").lower() for w in " ".join(_pool()).split() if w.isalpha() and len(w) > 1})


def _text(rng: random.Random, words: list[str], mean: int) -> str:
    n = max(1, int(rng.lognormvariate(0, 0.5) * mean))
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


def _seed(i: int, n: int, rng: random.Random, words: list[str]) -> dict:
    from components.seeds.describe import sound_description, speech_description
    from components.vocab import LEVELS, SPEEDS

    sid, duration = f"sim{i:07d}", round(rng.uniform(1.0, 15.0), 2)
    audio = f"ingest/shards/shard-{i // PER_SHARD:06d}.tar/{sid}.flac"
    if i % 10 == 9:  # one clip in ten is a sound
        cat = f"category_{i % 37}"
        return {"id": sid, "dataset": "sim-sound", "audio": audio, "transcript": None, "kind": "sound",
                "speaker": None, "seed_description": sound_description(duration, cat), "split": "test" if i % 5 == 4 else "train",
                "attributes": {"Audio category": {"value": cat, "source": "metadata"}}}
    attrs = {"Gender": rng.choice(["Male", "Female"]), "Pitch": rng.choice(LEVELS), "Volume": rng.choice(LEVELS),
             "Speaking speed": rng.choice(SPEEDS)}
    # corpora repeat some sentences (prompts read by several speakers): one clip in twenty
    text = _text(random.Random(i % max(1, n // 200)), words, 14) if i % 20 == 0 else _text(rng, words, 14)
    return {"id": sid, "dataset": f"sim-speech-{i % 8}", "audio": audio, "transcript": text, "kind": "speech",
            "speaker": f"spk{rng.randrange(max(1, n // 30))}", "seed_description": speech_description(duration, text, attrs),
            "split": "test" if i % 5 == 4 else "train", "attributes": {k: {"value": v, "source": "measured"} for k, v in attrs.items()}}


def _dump(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def prepare(n: int, root: Path) -> None:
    """Write the corpus: AQA jsonl, an ingest manifest to re-run on, seed shards, label rows, a DVC repo."""
    from components.atomic import sha256_file
    from components.label.rows import aqa_row

    rng, words, pool = random.Random(n), _words(), _pool()
    root.mkdir(parents=True, exist_ok=True)
    (root / "tiny.bin").write_bytes(TINY)
    digest = sha256_file(root / "tiny.bin")
    seeds, aqa, manifest, rows = [], [], [], []
    for i in range(n):
        s = _seed(i, n, rng, words)
        seeds.append(s)
        row = aqa_row(s, 0, rng.choice(pool), _text(rng, words, 45))
        rows.append(row)
        aqa.append({"id": row["id"], "dataset": s["dataset"], "messages": row["messages"] + [
            {"role": "assistant", "content": row["response"]}]})
        manifest.append({"id": s["id"], "source": f"corpus/{s['id']}.flac", "source_sha256": digest,
                         "dataset": s["dataset"], "duration": 3.0, "sample_rate": 16000,
                         "shard": f"shards/shard-{i // PER_SHARD:06d}.tar", "original_sample_rate": 16000,
                         "original_channels": 1, "metadata": {"transcript": s["transcript"]} if s["transcript"] else {}})
        if (i + 1) % PER_SHARD == 0 or i == n - 1:
            k = i // PER_SHARD
            _dump(root / "seeds/shards" / f"seeds-{k:06d}.jsonl", seeds)
            _dump(root / "rows" / f"label-{k:06d}.jsonl", rows)
            seeds, rows = [], []
    _dump(root / "aqa.jsonl", aqa)
    _dump(root / "ingest/manifest.jsonl", manifest)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("stages: {}\n")


def _seed_rows(root: Path) -> Iterator[dict]:
    from components.records import iter_seeds

    return iter_seeds(root / "seeds")  # streamed: each path keeps what it needs


def _ingest_adapter(root: Path, before: bool = False) -> dict:
    if before:  # a list of every candidate
        cands = _baseline("components/ingest/aqa.py", root, INGEST_BASELINE).prepare_aqa_jsonl(root / "aqa.jsonl", root / "audio")
        return {"candidates": len(cands)}
    from components.ingest.aqa import iter_aqa_jsonl

    return {"candidates": sum(1 for _ in iter_aqa_jsonl(root / "aqa.jsonl", root / "audio"))}  # each `missing`


class _Listed:
    """The manifest's inputs again, as candidates read afresh on each walk (like ingest's Sources)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __iter__(self):
        from components.ingest.candidates import Candidate

        with (self.root / "ingest/manifest.jsonl").open() as f:
            for line in f:
                r = json.loads(line)
                yield Candidate(r["source"], r["dataset"], path=self.root / "tiny.bin", metadata=r["metadata"])


def _ingest_rerun(root: Path, before: bool = False) -> dict:
    from components.ingest.decode import Limits

    if before:  # the whole candidate list, then the module of INGEST_BASELINE
        ingest, cands = _baseline("components/ingest/run.py", root, INGEST_BASELINE).ingest, list(_Listed(root))
    else:
        from components.ingest.run import ingest

        cands = _Listed(root)
    report = ingest(cands, root / "ingest", Limits(0.5, 30.0, -60.0), 64 << 20, show_progress=False)
    assert report.reused == report.total, "every row must be reused"
    return {"reused": report.reused}


def _split(root: Path) -> dict:
    from components.seeds.split import TEST, assign_splits

    split = assign_splits(_seed_rows(root), 0.2, 0)
    return {"test": split.count(TEST)}


def _label(root: Path) -> dict:
    from components.config import load_profile
    from components.label.attributes import seed_value
    from components.label.backends.base import Completion
    from components.label.run import label

    class Canned:  # instant answers that state the seed's voice: the sim measures everything but the LLM
        engine, stats = "canned", {}

        def length(self, request) -> int:
            return len(request.messages[-1]["content"])

        def answer(self, request) -> str:
            seed = request.messages[-1]["content"]
            v = {a.lower(): (seed_value(seed, a) or "medium").lower() for a in ("Gender", "Pitch", "Volume", "Speaking speed")}
            who = "woman" if v["gender"] == "female" else "man"
            return (f"A {who} speaks with a {v['pitch']} pitch and a {v['volume']} volume. "
                    f"The pace is {v['speaking speed']}.")

        def generate(self, requests) -> list:
            return [Completion(self.answer(r), "stop", 180, 24) for r in requests]

        def close(self) -> None: ...

    prof = load_profile(REPO / "params.yaml")
    cfg = prof.label.model_copy(update={"instructions_per_clip": 1, "max_clips_per_speaker": None, "splits": ["train"]})
    stats = label(root / "seeds", root / "label", cfg, prof.models, backend=Canned(), show_progress=False)
    return {"rows": stats["rows_written"], "cache_hits": stats["cache_hits"], "generated": stats["generated"]}


def _baseline(path: str, root: Path, commit: str = BASELINE):
    """A module as it was at `commit` (read from git), for the "before" figures."""
    from tests.bench.conftest import module_at

    return module_at(REPO, commit, path, root)


def _train_data(root: Path, before: bool = False) -> dict:
    from transformers import AutoTokenizer

    from components.config import load_profile
    from components.modeldir import local_dir
    from components.train import data as D

    prof = load_profile(REPO / "params.yaml")
    files = D.row_files(root / "rows")
    tok = AutoTokenizer.from_pretrained(local_dir(prof.models.llm))
    if before:  # both modules as they were: every row read into a list, then the old per-row encode
        old = _baseline("components/train/data.py", root)
        old.P = _baseline("components/model/prompt.py", root)
        rows, encode = old.read_rows(files), old.encode_rows
    else:
        rows, encode = D.iter_rows(files), D.encode_rows
    enc = encode(rows, tok, prof.model.prompt_size, prof.train.max_length, prof.model.max_transcript_tokens)
    del rows
    steps = D.Plan(prof.train.batch_size, 2, prof.train.grad_accum, prof.train.seed).epoch(enc.lengths, 0)
    h = hashlib.sha256()
    for e in enc.examples:
        if e:
            h.update(array("i", e.input_ids + e.labels).tobytes())
    return {"rows": len(enc.refs), "steps": len(steps), "tokens": sum(enc.lengths), "digest": h.hexdigest()[:16]}


def _train_share(root: Path) -> dict:
    """What one of two training ranks tokenises now (its share; the shares are then exchanged)."""
    from transformers import AutoTokenizer

    from components.config import load_profile
    from components.modeldir import local_dir
    from components.train import data as D

    prof = load_profile(REPO / "params.yaml")
    tok = AutoTokenizer.from_pretrained(local_dir(prof.models.llm))
    enc = D.encode_rows(D.iter_rows(D.row_files(root / "rows")), tok, prof.model.prompt_size, prof.train.max_length,
                        prof.model.max_transcript_tokens, part=(0, 2))
    return {"rows_tokenised": len(enc.refs)}


def _questions(root: Path, before: bool = False) -> dict:
    from components.evaluate.mcq import build_mcq

    build = _baseline("components/evaluate/mcq.py", root).build_mcq if before else build_mcq
    questions = build(_seed_rows(root))
    return {"questions": len(questions), "digest": hashlib.sha256(json.dumps(questions).encode()).hexdigest()[:16]}


def _lineage(root: Path) -> dict:
    from components.lineage.digests import hash_paths
    from components.lineage.log import _raw_sources

    digests = hash_paths(root, ["seeds/shards", "rows"])
    sources = _raw_sources(root, root / "ingest/manifest.jsonl")
    return {"files": sum(d.nfiles or 0 for d in digests.values()), "sources": len(sources)}


# In the order they run on one corpus (label runs twice: a cold cache, then every answer a hit).
PATHS: dict[str, Callable[[Path], dict]] = {
    "ingest adapter (AQA jsonl)": _ingest_adapter, "ingest re-run reuse": _ingest_rerun,
    "held-out split": _split, "label, cold cache": _label, "label, warm cache": _label,
    "train data plan + tokenise": _train_data, "train tokenise, rank 0 of 2": _train_share, "evaluate questions": _questions, "lineage digests": _lineage,
}
BEFORE: dict[str, Callable[[Path], dict]] = {  # the same paths as of their BASELINES (run where they finish)
    "ingest adapter (AQA jsonl)": lambda root: _ingest_adapter(root, before=True),
    "ingest re-run reuse": lambda root: _ingest_rerun(root, before=True),
    "train data plan + tokenise": lambda root: _train_data(root, before=True),
    "evaluate questions": lambda root: _questions(root, before=True),
}


BASELINES = {name: INGEST_BASELINE if name.startswith("ingest") else BASELINE for name in BEFORE}


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(name: str, root: Path, before: bool = False) -> dict:
    """One path, timed; peak_mb is the process's peak RSS above its RSS before the path started (the
    modules every path uses are imported first, and the kernel's peak counter reset)."""
    import dvc.repo  # noqa: F401
    import transformers  # noqa: F401

    import components.evaluate.run  # noqa: F401
    import components.ingest.run  # noqa: F401
    import components.label.run  # noqa: F401
    import components.lineage.log  # noqa: F401
    import components.train.data  # noqa: F401

    start_rss = psutil.Process().memory_info().rss
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    t0 = time.perf_counter()
    out = (BEFORE if before else PATHS)[name](root)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "peak_mb": round(max(_peak_rss() - start_rss, 0) / 2**20, 1), **out}


if __name__ == "__main__":
    cmd, arg, where = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if cmd == "prepare":
        prepare(int(arg), where)
    else:
        print(json.dumps(run(arg, where, before=cmd == "before")))
