"""Where models and caches live, and digests of a model directory (one place decides each).

The user cache is `$DESTA_CACHE` (default `~/.cache/desta`): prepared embedded models under
`models/`, the synthesised corpus under `corpus/`, training's encoder states under `encoder-states/`.
A model named in params is a local directory or a hub id already on disk (never downloaded).

Two digests, for two uses: `weights_digest` (every file that decides a generator's text, each hashed
whole: part of every label cache key) and `backbone_digest` (a frozen backbone recorded beside the
trained weights; files above 2 GiB in total are fingerprinted by name and size only, so an 8B
backbone is not re-read at every export).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from components.atomic import sha256_file

CACHE_ENV = "DESTA_CACHE"
_FULL_HASH_LIMIT = 2 << 30  # backbone files above this are fingerprinted by name + size only
# Files that decide what the generator writes: weights, config, tokenizer, chat template.
_DIGEST_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".jinja", ".model", ".txt")
_NOT_DIGESTED = {"desta-source.json", "desta-ct2.json"}  # they hold a machine-specific cache path
_MEMO: dict[tuple[str, int, int], str] = {}


def user_cache(*parts: str) -> Path:
    """A folder of the user cache: `user_cache("models")` = $DESTA_CACHE/models."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "desta")).joinpath(*parts)


def _file_sha256(path: Path) -> str:
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _MEMO:
        _MEMO[memo_key] = sha256_file(path)
    return _MEMO[memo_key]


def weights_digest(model_dir: Path) -> str:
    """sha256 over (name, sha256) of the files that define the model's outputs."""
    files = sorted(
        p for p in model_dir.iterdir()
        if p.is_file() and p.suffix in _DIGEST_SUFFIXES and p.name not in _NOT_DIGESTED and not p.name.startswith(".")
    )
    if not files:
        raise FileNotFoundError(f"no model files in {model_dir}")
    listing = [[p.name, _file_sha256(p)] for p in files]
    return "sha256:" + hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def local_dir(name: str) -> Path | None:
    """A local directory for `name`: itself, or a hub snapshot already on disk (never downloads)."""
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not a hub id, or not cached: the caller records it unresolved
        return None


def backbone_digest(name: str) -> str:
    """sha256 over a backbone's config and weight files (large ones by name + size)."""
    d = local_dir(name)
    h = hashlib.sha256()
    if d is None:
        h.update(f"unresolved:{name}".encode())
        return h.hexdigest()
    files = sorted(p for p in d.iterdir() if p.suffix in {".json", ".safetensors", ".bin"} and p.name != "desta-source.json")
    total = sum(p.stat().st_size for p in files)
    for p in files:
        h.update(p.name.encode())
        if p.suffix == ".json" or total <= _FULL_HASH_LIMIT:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        else:
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()
