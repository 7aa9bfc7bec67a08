"""The lineage hook: one call where a stage opens its MLflow run.

    with stage_run("label", ...) as run:
        log_stage_lineage(run, "label")

It records, on that run (through components.tracking, the only MLflow caller):
- the git commit (tag `desta.lineage.git_commit`, next to MLflow's own `mlflow.source.git.commit`),
  `params.yaml` and `dvc.lock` as artifacts under `lineage/`, and `lineage/lineage.json` (all below);
- every data input of the stage (its dvc.yaml deps that are DVC-cached outputs of another stage or of a
  `.dvc` file) as an MLflow dataset: name = repo path, digest = DVC md5 (`….dir` for a directory),
  source = the object's S3 URI in the DVC remote (`<remote>/files/md5/xx/yyyy…`), context `input`,
  tags naming the producing stage and whether it matches that stage's dvc.lock entry;
- every cached output present when the hook runs as a tag `desta.lineage.out.<path>` = md5, which is
  how `desta lineage` finds the run that produced an input;
- label provenance (a `provenance.json` sidecar in an output): generator name/digest, instruction pool
  digest, seeds digest, as tags;
- raw sources (an output `manifest.jsonl` with `source_sha256` rows, i.e. the ingest manifest): one
  dataset per source dataset, context `raw-source`, digest = md5 over its inputs' sha256; plus the
  sources named in the corpus card.

Why hashes are computed here rather than read from dvc.lock: while a stage runs, its own dvc.lock entry
does not exist yet (DVC writes it after the command succeeds). The digests of its deps are computed with
DVC's own hashing (`Output.get_hash`, through DVC's state database, so unchanged files are not re-read),
which gives exactly what DVC then writes into this stage's `deps` in dvc.lock. Each is cross-checked
against the producing stage's `outs` in dvc.lock (`desta.lock_match`): a mismatch means the workspace was
changed after that stage ran, so the object is not the one DVC recorded (nor, after a push, in the remote).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from components.lineage.digests import compute, find_root, producers, read_lock, remote_config, remote_uri

LINEAGE_VERSION = "1"
OUT_TAG = "desta.lineage.out."  # + repo path -> md5 of that output when the run logged it
log = logging.getLogger(__name__)


def out_tag(path: str) -> str:
    return OUT_TAG + path


def _raw_sources(root: Path, manifest: Path) -> list[dict[str, Any]]:
    """Per source dataset of an ingest manifest: clips, a digest of its inputs, where they were read from."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with manifest.open() as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if "source_sha256" in row:
                    groups[str(row.get("dataset") or "unknown")].append((str(row.get("source", "")), row["source_sha256"]))
    out = []
    for name, items in sorted(groups.items()):
        h = hashlib.md5()  # noqa: S324 - an identifier, like DVC's md5
        for sha in sorted(s for _, s in items):
            h.update(sha.encode() + b"\n")
        paths = [p for p, _ in items if p]
        common = os.path.commonpath(paths) if paths and all(p.startswith("/") for p in paths) else (paths[0] if paths else name)
        if len(paths) > 1 and Path(common) in {Path(p) for p in paths}:
            common = str(Path(common).parent)
        out.append({"name": name, "clips": len(items), "digest": h.hexdigest(), "source": common,
                    "manifest": manifest.relative_to(root).as_posix()})
    return out


def _card_sources(card: Path) -> str | None:
    m = re.search(r"Sources of this ingest run: (.+?)\.?\s*$", card.read_text(), re.M) if card.is_file() else None
    return m.group(1).replace("`", "") if m else None


def build_record(stage: str, root: Path) -> dict[str, Any]:
    """Everything the hook logs, as plain data (lineage.json)."""
    from components.tracking import git_commit

    url, _ = remote_config(root)
    lock = read_lock(root)
    made_by = producers(root)
    deps, outs = compute(root, stage)
    inputs, workspace = [], []
    for path, d in sorted(deps.items()):
        producer = made_by.get(path)
        entry: dict[str, Any] = d.as_dict() | {"producer": producer}
        if producer is None:  # code/config: versioned by git, not stored in the DVC remote
            workspace.append(entry)
            continue
        recorded = lock.get(producer, {}).get("outs", {}).get(path) if producer in lock else None
        entry["lock_match"] = None if recorded is None else recorded.md5 == d.md5
        entry["uri"] = remote_uri(url, d.md5) if url else None
        inputs.append(entry)
    cached = {p for p, s in made_by.items() if s == stage}
    outputs = [d.as_dict() | {"uri": remote_uri(url, d.md5) if url else None}
               for p, d in sorted(outs.items()) if p in cached]
    record: dict[str, Any] = {
        "version": LINEAGE_VERSION, "stage": stage, "git_commit": git_commit(root), "remote": url,
        "inputs": inputs, "workspace_deps": workspace, "outputs": outputs,
    }
    for p in sorted(outs):
        base = root / p
        sidecar = base / "provenance.json" if base.is_dir() else None
        if sidecar is not None and sidecar.is_file():
            prov = json.loads(sidecar.read_text())
            gen, pool = prov.get("generator") or {}, prov.get("pool") or {}
            record["provenance"] = {
                "file": sidecar.relative_to(root).as_posix(), "generator": gen.get("name"),
                "generator_digest": gen.get("digest"), "self_generated": gen.get("self_generated"),
                "pool": pool.get("path"), "pool_digest": pool.get("sha256"),
                "seeds_sha256": (prov.get("seeds") or {}).get("sha256"),
            }
        if base.name == "manifest.jsonl" and base.is_file():
            record["raw_sources"] = _raw_sources(root, base)
            record["ingest_sources"] = _card_sources(base.parent / "corpus_card.md")
    return record


def _datasets(record: dict[str, Any]) -> list[dict[str, Any]]:
    sets = []
    for e in record["inputs"]:
        sets.append({"name": e["path"], "digest": e["md5"], "source": e["uri"] or e["path"], "context": "input",
                     "tags": {"desta.role": "dvc", "desta.path": e["path"], "desta.producer": e["producer"],
                              "desta.lock_match": e["lock_match"], "desta.size": e["size"], "desta.nfiles": e["nfiles"]}})
    for s in record.get("raw_sources", []):
        sets.append({"name": f"raw:{s['name']}", "digest": s["digest"], "source": s["source"], "context": "raw-source",
                     "tags": {"desta.role": "raw-source", "desta.clips": s["clips"], "desta.manifest": s["manifest"]}})
    return sets


def log_stage_lineage(run: Any, stage: str, root: Path | None = None) -> dict[str, Any] | None:
    """Log `stage`'s lineage on `run` (a components.tracking.StageRun); returns the record.

    A problem does not fail the stage (its results are kept): it is logged as a warning and tagged
    `desta.lineage.error`, which `desta lineage` reports as the broken link. DESTA_LINEAGE_STRICT=1 raises."""
    root = root or find_root()
    try:
        if root is None or not (root / "dvc.yaml").is_file():
            raise FileNotFoundError(f"no DVC pipeline (dvc.yaml under a .dvc/ repo) above {Path.cwd()}")
        record = build_record(stage, root)
        run.log_datasets(_datasets(record))
        tags = {"desta.lineage.version": LINEAGE_VERSION, "desta.lineage.stage": stage,
                "desta.lineage.git_commit": record["git_commit"] or "unknown",
                "desta.lineage.remote": record["remote"] or "none"}
        tags |= {out_tag(o["path"]): o["md5"] for o in record["outputs"]}
        tags |= {f"desta.lineage.{k}": v for k, v in (record.get("provenance") or {}).items() if v is not None}
        if record.get("ingest_sources"):
            tags["desta.lineage.ingest_sources"] = record["ingest_sources"]
        run.set_tags(tags)
        for name in ("params.yaml", "dvc.lock"):
            if (root / name).is_file():
                run.log_artifact(root / name, "lineage")
        run.log_dict(record, "lineage/lineage.json")
        return record
    except Exception as err:  # noqa: BLE001 - lineage must not lose a finished stage's results
        if os.environ.get("DESTA_LINEAGE_STRICT") == "1":
            raise
        log.warning("lineage of stage %s not recorded: %s", stage, err)
        try:
            run.set_tags({"desta.lineage.error": f"{type(err).__name__}: {err}"[:5000]})
        except Exception:  # noqa: BLE001
            pass
        return None
