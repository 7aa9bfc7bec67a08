"""Adapter: lhotse recording (+ supervision) manifests, so any lhotse recipe feeds the pipeline.

One candidate per recording (the whole file); its supervisions give transcript, speaker, gender,
language and custom fields. Only `file` audio sources are read, and only under the data root: the trust
boundary against manifests that point at `/etc/...` or `../..`. lhotse recipes write absolute paths to
the corpus they downloaded, beside their manifests' folder, not in it; so with no data root given (the
default is the manifest's folder) a manifest whose audio lies outside it stops before anything is
decoded, naming the folder it points at, and the user decides whether to trust it (`--data-root`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from components.ingest.candidates import BAD_ROW, MISSING, OUTSIDE_ROOT, Candidate, within_root


def is_lhotse_manifest(path: Path) -> bool:
    return path.is_file() and "recordings" in path.name and path.name.endswith((".jsonl", ".jsonl.gz", ".json"))


def _supervision_metadata(sups: list[Any]) -> dict[str, Any]:
    sups = sorted(sups, key=lambda s: s.start)
    meta: dict[str, Any] = {}
    text = " ".join(s.text.strip() for s in sups if s.text)
    if text:
        meta["transcript"] = text
    first = sups[0] if sups else None
    if first is not None:
        for key in ("speaker", "gender", "language"):
            if getattr(first, key, None):
                meta[key] = getattr(first, key)
        meta.update(first.custom or {})
    return meta


def prepare_lhotse(recordings: Path, data_root: Path | None = None, dataset: str | None = None) -> list[Candidate]:
    """Candidates from a lhotse RecordingSet manifest and the SupervisionSet beside it, if any."""
    from lhotse import RecordingSet, SupervisionSet

    root = data_root or recordings.parent
    name = dataset or recordings.name.split("_recordings")[0].split(".")[0]
    sup_path = recordings.with_name(recordings.name.replace("recordings", "supervisions"))
    by_rec: dict[str, list[Any]] = {}
    if sup_path.is_file():
        for sup in SupervisionSet.from_file(sup_path):
            by_rec.setdefault(sup.recording_id, []).append(sup)
    recs = list(RecordingSet.from_file(recordings))
    if data_root is None:
        _check_default_root(recordings, recs, root)
    out: list[Candidate] = []
    for rec in recs:
        files = [s for s in rec.sources if s.type == "file"]
        if len(files) != len(rec.sources) or not files:
            out.append(Candidate(f"{recordings}#{rec.id}", name, reject=BAD_ROW, detail="only file sources are supported"))
            continue
        ref = str(files[0].source)
        target = within_root(ref, root)
        if target is None:
            out.append(Candidate(ref, name, reject=OUTSIDE_ROOT, detail=f"recording {rec.id} escapes {root}"))
        elif not target.exists():
            out.append(Candidate(ref, name, reject=MISSING, detail=f"recording {rec.id}: no such file"))
        else:
            meta = {"recording_id": rec.id, **_supervision_metadata(by_rec.get(rec.id, []))}
            out.append(Candidate(ref, name, path=target, metadata=meta))
    return out


def _check_default_root(recordings: Path, recs: list[Any], root: Path) -> None:
    """Raise (one line) when recordings lie outside the default data root, naming their common folder."""
    refs = [str(s.source) for r in recs for s in r.sources if s.type == "file"]
    outside = [ref for ref in refs if within_root(ref, root) is None]
    if not outside:
        return
    folders = [str((Path(ref) if Path(ref).is_absolute() else root / ref).resolve().parent) for ref in outside]
    common = os.path.commonpath(folders)
    raise ValueError(
        f"{recordings}: {len(outside)} of {len(refs)} recordings lie outside the default data root {root} "
        f"(the manifest's folder), under {common}. If you trust that folder, pass --data-root {common} "
        f"(or set ingest.data_root in params.yaml); nothing was decoded")
