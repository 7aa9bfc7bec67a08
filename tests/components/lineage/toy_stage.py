"""Tiny stand-ins for the pipeline stages (run by `dvc repro` in a tmp repo): each writes small outputs
the way the real stage lays them out, opens its MLflow run through components.tracking and calls the
lineage hook, as the real stages do. `python toy_stage.py STAGE`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from components.lineage import log_stage_lineage
from components.tracking import stage_run

EXPERIMENT = os.environ.get("TOY_EXPERIMENT", "lineage-toy")
MODEL = os.environ.get("TOY_MODEL", "lineage-toy-model")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def ingest() -> None:
    out = Path("data/ingest")
    rows = [{"id": f"clip{i}", "dataset": "speech" if i < 3 else "sounds", "source": f"/raw/{'speech' if i < 3 else 'sounds'}/{i}.wav",
             "source_sha256": hashlib.sha256(f"raw-{i}".encode()).hexdigest(), "shard": "shards/shard-000000.tar"}
            for i in range(5)]
    _write(out / "shards" / "shard-000000.tar", "".join(f"audio-{r['id']}\n" for r in rows[:3]))
    _write(out / "shards" / "shard-000001.tar", "".join(f"audio-{r['id']}\n" for r in rows[3:]))
    _write(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _write(out / "corpus_card.md", "# Corpus card\n\nSources of this ingest run: `/raw/speech`, `/raw/sounds`.\n")
    with stage_run("ingest", EXPERIMENT) as run:
        log_stage_lineage(run, "ingest")


def seeds() -> None:
    rows = [json.loads(line) for line in Path("data/ingest/manifest.jsonl").read_text().splitlines()]
    _write(Path("data/seeds/shards/seeds-000000.jsonl"),
           "".join(json.dumps({"id": r["id"], "seed_description": f"[00:00-00:01] {r['id']}"}) + "\n" for r in rows))
    _write(Path("data/seeds/shards/seeds-000001.jsonl"), "")
    with stage_run("seeds", EXPERIMENT) as run:
        log_stage_lineage(run, "seeds")


def label() -> None:
    seeds_text = Path("data/seeds/shards/seeds-000000.jsonl").read_text()
    shards = Path("data/label/shards")
    _write(shards / "shard-000000.jsonl", "".join(
        json.dumps({"id": json.loads(s)["id"], "response": "a voice"}) + "\n" for s in seeds_text.splitlines()))
    prov = {"stage": "label", "generator": {"name": "toy-llm", "digest": "sha256:" + "ab" * 32, "self_generated": True},
            "pool": {"path": "builtin:instructions.jsonl", "sha256": "cd" * 32},
            "seeds": {"clips": 5, "sha256": hashlib.sha256(seeds_text.encode()).hexdigest()}}
    _write(shards / "provenance.json", json.dumps(prov, indent=2))
    with stage_run("label", EXPERIMENT) as run:
        log_stage_lineage(run, "label")


def train() -> None:
    with stage_run("train", EXPERIMENT) as run:  # like the real worker: the run opens before training
        log_stage_lineage(run, "train")
        model = Path("data/train/model")
        _write(model / "weights.safetensors", "weights " + Path("data/label/shards/shard-000000.jsonl").read_text())
        run.log_artifact(model, "model")
        log_stage_lineage(run, "train")  # again once the model exists, as the real worker does: its digest for evaluate
        version = run.register_model("model", MODEL)
        _write(Path("data/train/run.json"), json.dumps({"mlflow_run_id": run.run_id, "registered_version": version}))


def evaluate() -> None:
    _write(Path("data/evaluate/predictions.jsonl"), Path("data/seeds/shards/seeds-000000.jsonl").read_text())
    version = json.loads(Path("data/train/run.json").read_text())["registered_version"]
    with stage_run("evaluate", EXPERIMENT, tags={"desta.model_version": version}) as run:
        log_stage_lineage(run, "evaluate")
        _write(Path("data/evaluate/run_id"), run.run_id)


if __name__ == "__main__":
    {"ingest": ingest, "seeds": seeds, "label": label, "train": train, "evaluate": evaluate}[sys.argv[1]]()
