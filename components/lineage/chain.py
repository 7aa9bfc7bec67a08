"""Walk a model version's lineage back to the raw sources and check every digest is in the DVC remote.

model version -> training run -> its inputs (label shards, ingest shards) -> the run that produced each
(found by the `desta.lineage.out.<path>` = md5 tag the hook sets) -> its inputs ... -> ingest run -> raw
sources. Every DVC object is checked with an S3 HEAD (a `.dir` object, then each file it lists).
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components import tracking
from components.lineage.digests import FILES_PREFIX, remote_uri
from components.lineage.log import OUT_TAG


@dataclass
class Link:
    """One node of the chain; `problem` set means this link is broken."""

    level: int
    kind: str  # model-version | run | data | provenance | raw-source
    name: str
    digest: str | None = None
    uri: str | None = None
    detail: str = ""
    problem: str | None = None
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class Chain:
    start: str
    links: list[Link] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.links) and all(link.ok for link in self.links)

    @property
    def broken(self) -> list[Link]:
        return [link for link in self.links if not link.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "ok": self.ok,
                "broken": [f"{b.kind} {b.name}: {b.problem}" for b in self.broken],
                "links": [asdict(link) | {"ok": link.ok} for link in self.links]}


class RemoteChecker:
    """Is a DVC object in the remote? S3 via boto3 (endpoint from DESTA_S3_ENDPOINT_URL / AWS_ENDPOINT_URL,
    credentials from the usual AWS_* variables), or a local directory remote."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint or os.environ.get("DESTA_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        self._s3: Any = None
        self._seen: dict[str, list[str]] = {}

    def _client(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3", endpoint_url=self.endpoint or None)
        return self._s3

    def _exists(self, uri: str) -> bool | str:
        u = urlparse(uri)
        if u.scheme == "s3":
            from botocore.exceptions import ClientError

            try:
                self._client().head_object(Bucket=u.netloc, Key=u.path.lstrip("/"))
                return True
            except ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", ""))
                if code in {"404", "NoSuchKey", "NotFound"}:
                    return False
                return f"S3 error {code or err}"
        if u.scheme in {"", "file"}:
            return Path(u.path if u.scheme else uri).is_file()
        return f"cannot check a {u.scheme}:// remote"

    def _read(self, uri: str) -> bytes:
        u = urlparse(uri)
        if u.scheme == "s3":
            return self._client().get_object(Bucket=u.netloc, Key=u.path.lstrip("/"))["Body"].read()
        return Path(u.path if u.scheme else uri).read_bytes()

    def check(self, uri: str, md5: str) -> list[str]:
        """Problems with object `md5` at `uri` (for a directory: its .dir listing and every file in it)."""
        if uri in self._seen:
            return self._seen[uri]
        problems: list[str] = []
        found = self._exists(uri)
        if found is not True:
            problems.append(f"object missing from the DVC remote: {uri}" if found is False else f"{found}: {uri}")
        elif md5.endswith(".dir"):
            base = uri[: uri.index(f"/{FILES_PREFIX}/")]
            try:
                entries = json.loads(self._read(uri))
            except (ValueError, OSError) as err:
                entries = []
                problems.append(f"unreadable .dir listing {uri}: {err}")
            uris = [(e["relpath"], remote_uri(base, e["md5"])) for e in entries]
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda item: self._exists(item[1]), uris))
            for (rel, u), ok in zip(uris, results, strict=True):
                if ok is not True:
                    problems.append(f"file {rel} missing from the DVC remote: {u}" if ok is False else f"{ok}: {u}")
        self._seen[uri] = problems
        return problems


_REF = re.compile(r"^(?:models:/)?(?:(?P<name>[^/@]+)(?P<sep>[/@]))?(?P<ref>[^/@]+)$")


def parse_model_ref(ref: str, default_name: str | None) -> tuple[str, str | None, str | None]:
    """'3', 'champion', 'name/3', 'name@champion', 'models:/name/3' -> (name, version, alias)."""
    m = _REF.match(ref.strip())
    if not m:
        raise ValueError(f"not a model version: {ref!r} (use VERSION, ALIAS, NAME/VERSION or NAME@ALIAS)")
    name = m.group("name") or default_name
    if not name:
        raise ValueError(f"{ref!r} names no registered model and no default is configured (use NAME/VERSION)")
    value = m.group("ref")
    if m.group("sep") == "@" or not value.isdigit():
        return name, None, value
    return name, value, None


class Walker:
    def __init__(self, checker: RemoteChecker | None, remote_url: str | None) -> None:
        self.checker, self.remote_url = checker, remote_url
        self.visited: dict[str, str] = {}  # run_id -> stage

    def model(self, chain: Chain, name: str, version: str | None, alias: str | None) -> None:
        ref = f"{name}@{alias}" if alias else f"{name}/{version}"
        try:
            mv = tracking.get_model_version(name, version, alias)
        except LookupError as err:
            chain.links.append(Link(0, "model-version", ref, problem=str(err)))
            return
        label = f"{mv['name']} v{mv['version']}" + (f" ({', '.join(mv['aliases'])})" if mv["aliases"] else "")
        link = Link(0, "model-version", label, uri=mv["source"], run_id=mv["run_id"],
                    detail=f"training run {mv['run_id'] or '-'}; status {mv['status']}")
        chain.links.append(link)
        if not mv["run_id"]:
            link.problem = f"model version {label} has no training run link (run_id empty; source {mv['source']})"
            return
        run = tracking.get_run(mv["run_id"])
        if run is None:
            link.problem = f"model version {label} names training run {mv['run_id']}, which does not exist"
            return
        logged_by_run = mv.get("source_run_id") == mv["run_id"]  # an MLflow model that run logged
        if not logged_by_run and mv["run_id"] not in (mv["source"] or "") \
                and not (mv["source"] or "").startswith(run["artifact_uri"] or "\0"):
            link.problem = f"model version {label}: source {mv['source']} is not an artifact of run {mv['run_id']}"
        if run["tags"].get("desta.stage") != "train":
            link.problem = (f"model version {label} links run {mv['run_id']}, which is a "
                            f"{run['tags'].get('desta.stage', 'non-pipeline')} run, not a training run")
            return
        self.run(chain, run, 1)

    def run(self, chain: Chain, run: dict[str, Any], level: int) -> None:
        tags, stage = run["tags"], run["tags"].get("desta.stage", "?")
        link = Link(level, "run", f"{stage} run {run['run_id']}", run_id=run["run_id"],
                    detail=f"git {tags.get('desta.lineage.git_commit') or tags.get('mlflow.source.git.commit', '?')}")
        chain.links.append(link)
        if run["run_id"] in self.visited:
            link.detail += " (already shown above)"
            return
        self.visited[run["run_id"]] = stage
        if tags.get("desta.lineage.error"):
            link.problem = f"{stage} run {run['run_id']}: lineage was not recorded ({tags['desta.lineage.error']})"
            return
        if not tags.get("desta.lineage.version"):
            link.problem = f"{stage} run {run['run_id']} has no lineage record (was the stage's lineage hook called?)"
            return
        if stage == "label" or tags.get("desta.lineage.generator_digest"):
            gen, pool = tags.get("desta.lineage.generator_digest"), tags.get("desta.lineage.pool_digest")
            prov = Link(level + 1, "provenance", f"generator {tags.get('desta.lineage.generator', '?')}", digest=gen,
                        detail=f"pool {tags.get('desta.lineage.pool', '?')} {pool}; "
                               f"self-generated {tags.get('desta.lineage.self_generated', '?')}")
            if not gen or not pool:
                prov.problem = f"label run {run['run_id']} records no generator/pool digest (provenance sidecar missing)"
            chain.links.append(prov)
        data = [i for i in run["inputs"] if i["context"] == "input" and i["tags"].get("desta.role") == "dvc"]
        raw = [i for i in run["inputs"] if i["context"] == "raw-source"]
        # nearest upstream first (the most recent producing run), so the chain reads label -> seeds -> ingest
        resolved = sorted((self.data(run, inp, level + 1) for inp in sorted(data, key=lambda i: i["name"])),
                          key=lambda r: -(r[1]["start_time"] or 0) if isinstance(r[1], dict) else 0)
        for link, producer in resolved:
            chain.links.append(link)
            if isinstance(producer, Link):
                chain.links.append(producer)
            elif producer is not None:
                self.run(chain, producer, level + 2)
        for inp in sorted(raw, key=lambda i: i["name"]):
            chain.links.append(Link(level + 1, "raw-source", inp["name"].removeprefix("raw:"), digest=inp["digest"],
                                    uri=inp["source"], detail=f"{inp['tags'].get('desta.clips', '?')} clips "
                                    f"(sources: {tags.get('desta.lineage.ingest_sources', '?')})"))
        if stage == "ingest" and not raw:
            link.problem = f"ingest run {run['run_id']} names no raw sources (no manifest recorded)"
        if not data and not raw:
            link.problem = link.problem or f"{stage} run {run['run_id']} records no inputs"

    def data(self, run: dict[str, Any], inp: dict[str, Any], level: int) -> tuple[Link, dict[str, Any] | Link | None]:
        """The link of one input, and its producing run (or a broken link saying none was found)."""
        path, md5, t = inp["name"], inp["digest"], inp["tags"]
        uri = inp["source"] if str(inp["source"]).startswith(("s3://", "gs://", "azure://", "file://", "/")) \
            and f"/{FILES_PREFIX}/" in str(inp["source"]) else None
        if uri is None and self.remote_url:
            uri = remote_uri(self.remote_url, md5)
        producer = t.get("desta.producer") or "?"
        nfiles = t.get("desta.nfiles")
        link = Link(level, "data", path, digest=md5, uri=uri,
                    detail=f"from {producer}" + (f", {nfiles} files" if nfiles not in (None, "None") else ""))
        problems = []
        if t.get("desta.lock_match") == "False":
            problems.append(f"the {path} that {run['tags'].get('desta.stage')} read differs from what stage {producer} "
                            "recorded in dvc.lock")
        if uri is None:
            problems.append("no DVC remote known (set DESTA_DVC_REMOTE_URL or a default DVC remote)")
        elif self.checker is not None:
            problems += self.checker.check(uri, md5)
        if problems:
            link.problem = f"{path} ({md5}): " + "; ".join(problems)
        if producer.endswith(".dvc"):
            return link, None  # added with `dvc add`: no producing run
        found = tracking.find_runs([run["experiment_id"]], {OUT_TAG + path: md5})
        if not found:
            return link, Link(level + 1, "run", f"{producer} run ?", problem=(
                f"no MLflow run of stage {producer} recorded output {path} with digest {md5}"))
        parent = run["tags"].get("mlflow.parentRunId")
        same = [r for r in found if parent and r["tags"].get("mlflow.parentRunId") == parent]
        return link, (same or found)[0]


def walk(model_ref: str | None = None, run_id: str | None = None, default_name: str | None = None,
         remote_url: str | None = None, endpoint: str | None = None, check_remote: bool = True) -> Chain:
    """The lineage chain of a model version (or a run), each DVC object checked in the remote."""
    walker = Walker(RemoteChecker(endpoint) if check_remote else None, remote_url)
    if run_id:
        chain = Chain(f"run {run_id}")
        run = tracking.get_run(run_id)
        if run is None:
            chain.links.append(Link(0, "run", run_id, problem=f"run {run_id} does not exist"))
        else:
            walker.run(chain, run, 0)
        return chain
    name, version, alias = parse_model_ref(model_ref or "", default_name)
    chain = Chain(f"{name}@{alias}" if alias else f"{name}/{version}")
    walker.model(chain, name, version, alias)
    return chain
