"""Test workspaces for the flows: a git clone of the repo with a micro corpus, and helpers to run in it.

A clone (not the repo itself): the flows run `dvc repro`, which writes data/, dvc.lock and params.yaml.
Stage commands import the clone's code (PYTHONPATH), so the deps DVC hashes are the code that runs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from components.ingest.embedded import EspeakSettings, build_espeak_corpus, default_cache
from components.stack.objectstore import free_ports
from tests.conftest import REPO

BIN = Path(sys.executable).parent
MICRO_PER_VOICE = 3  # x 10 espeak voices = 30 clips


def free_port() -> int:
    """A loopback port free now. Another process can take it before it is used: start servers through
    `servers.on_free_port` (which tries again), and use `refused_port` for an address nothing listens on."""
    return free_ports(1)[0]


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port held for the test, bound but not listening: connecting is refused, and no other
    process can start listening on it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def micro_corpus(dest: Path, per_voice: int = MICRO_PER_VOICE) -> Path:
    """A few real espeak clips (from the embedded corpus's cache) of every voice (one per voice/sentence group).

    Held-out splitting works by speaker/transcript groups, so every group must be represented.
    """
    src = build_espeak_corpus(EspeakSettings(espeak_clips=300), default_cache())
    rows = [json.loads(x) for x in (src / "metadata.jsonl").read_text().splitlines()]
    seen: dict[str, int] = {}
    keep = []
    for r in rows:
        seen[r["speaker"]] = seen.get(r["speaker"], 0) + 1
        if seen[r["speaker"]] <= per_voice:
            keep.append(r)
    dest.mkdir(parents=True, exist_ok=True)
    for r in keep:
        shutil.copy(src / r["file"], dest / r["file"])
    (dest / "metadata.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
    return dest


def micro_overrides(corpus: Path) -> list[str]:
    """params overrides (tiny profile) that make every real stage take seconds, not minutes."""
    return [
        f"tiny.ingest.sources=[{corpus}]",
        "tiny.ingest.workers=1",
        "tiny.seeds.report_clips_per_dataset=4",
        "tiny.label.batch_size=16",
        "tiny.label.max_new_tokens=24",
        "tiny.label.max_retries=0",
        "tiny.label.instructions_per_clip=1",
        "tiny.label.focus=false",  # 24-token answers on a few clips: keep whole answers so train has rows
        "tiny.train.max_steps=4",
        "tiny.train.batch_size=4",
        "tiny.train.warmup_steps=1",
        "tiny.train.checkpoint_every=4",
        "tiny.evaluate.max_questions=10",
        "tiny.evaluate.batch_size=10",
    ]


def clone(dest: Path) -> Path:
    """A git clone of the repo's HEAD with the prepared models linked in (they are not in git)."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "config", "user.email", "test@desta"], check=True)
    subprocess.run(["git", "-C", str(dest), "config", "user.name", "test"], check=True)
    (dest / "models").symlink_to(REPO / "models")
    return dest


def env_for(workspace: Path, **extra: str) -> dict[str, str]:
    """Environment for a process working in `workspace`: its code first, this venv on PATH, offline."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(workspace),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }


# A micro pipeline with the real dvc.yaml mechanics (params, deps, outs, lock) but stages that take
# a second: for the orchestration tests (deployments, faults). Each run of a stage appends a line to
# runs.log (untracked), so a test can count what ran; STAGE_SLEEP_<STAGE> makes a stage slow,
# STAGE_BYTES_<STAGE> its output large.
MICRO_STAGE = '''
import json, os, sys, time, pathlib, yaml
stage = sys.argv[1]
params = yaml.safe_load(open("params.yaml"))["tiny"]
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path(f"out/{stage}.started").write_text(str(os.getpid()))
with open("runs.log", "a") as log:
    log.write(stage + "\\n")
time.sleep(float(os.environ.get(f"STAGE_SLEEP_{stage.upper()}", "0")))
upstream = pathlib.Path("out/prepare.json").read_text() if stage == "train" else ""
value = {"max_steps": params["train"]["max_steps"], "upstream": upstream}
pad = int(os.environ.get(f"STAGE_BYTES_{stage.upper()}", "0"))
if pad:  # incompressible filler (SeaweedFS gzips text): a large output for the disk-full tests
    import base64
    value["pad"] = base64.b64encode(os.urandom(pad)).decode()
pathlib.Path(f"out/{stage}.json").write_text(json.dumps(value))
'''

MICRO_DVC = {
    "stages": {
        "prepare": {"cmd": "python stage.py prepare", "deps": ["stage.py"], "params": ["tiny.train.max_steps"],
                    "outs": ["out/prepare.json"]},
        "train": {"cmd": "python stage.py train", "deps": ["stage.py", "out/prepare.json"], "outs": ["out/train.json"]},
    }
}


def micro_workspace(dest: Path) -> Path:
    """A git + DVC repo with the real params.yaml, prefect.yaml and flows/, and the two micro stages."""
    import yaml

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "prefect.yaml"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "flows", dest / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "stage.py").write_text(MICRO_STAGE)
    (dest / "dvc.yaml").write_text(yaml.safe_dump(MICRO_DVC, sort_keys=False))
    (dest / ".gitignore").write_text("runs.log\nmlflow.db\nmlartifacts/\n")
    git = ["git", "-C", str(dest)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "config", "user.email", "test@desta"], check=True)
    subprocess.run([*git, "config", "user.name", "test"], check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=dest, check=True)
    subprocess.run([str(BIN / "dvc"), "config", "core.analytics", "false"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "micro workspace"], check=True)
    return dest


def runs(workspace: Path) -> list[str]:
    """Stages in the order they ran (from runs.log)."""
    log = workspace / "runs.log"
    return log.read_text().split() if log.is_file() else []


OVERLAY = ("components", "flows", "infra", "dvc.yaml", "params.yaml", "prefect.yaml")


def overlay_working_tree(dest: Path) -> None:
    """Copy the repo's working tree (what this venv runs) over a clone, so the clone runs the code under test."""
    for name in OVERLAY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
