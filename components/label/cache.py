"""Content-addressed response cache: sha256(seed description, instruction, generator digest,
template, decoding params) -> response.

SQLite in WAL mode: one transaction per generated batch, so a `kill -9` keeps whole batches or
nothing (resume then re-plans the same batches and reproduces the same numerics), and several
unit workers on one host can share it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = "responses.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY,
  response TEXT NOT NULL,
  finish TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  generator TEXT NOT NULL
)"""


@dataclass(frozen=True)
class Cached:
    response: str
    finish: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


def cache_key(seed_description: str, instruction: str, generator_digest: str, template_digest: str,
              decoding: Mapping[str, Any]) -> str:
    """The content address of one response."""
    payload = json.dumps(
        [seed_description, instruction, generator_digest, template_digest, dict(sorted(decoding.items()))],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@contextmanager
def _disk_full_is_oserror(path: Path) -> Iterator[None]:
    """SQLite's "database or disk is full" as the OSError every other writer raises (one error line upstream)."""
    try:
        yield
    except sqlite3.OperationalError as err:
        if getattr(err, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err


class ResponseCache:
    """A handle on `<dir>/responses.sqlite`; open one per worker thread or process."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CACHE_FILE
        with _disk_full_is_oserror(self.path):
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
            self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, Cached]:
        """The cached responses among `keys`."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, Cached] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, response, finish, prompt_tokens, completion_tokens FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
            for k, *rest in self._db.execute(q, chunk):
                out[k] = Cached(*rest)
        return out

    def put_many(self, entries: Mapping[str, Cached], generator: str) -> None:
        """Store a batch in one transaction (all or nothing). The first writer of a key wins."""
        with _disk_full_is_oserror(self.path), self._db:  # BEGIN ... COMMIT, rolled back on error
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                [(k, c.response, c.finish, c.prompt_tokens, c.completion_tokens, generator) for k, c in entries.items()],
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
