"""The previous ingest run's rows, indexed by source without holding them (a re-run reuses them)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from components.ingest.candidates import Candidate
from components.records import MANIFEST, DamagedFile

QUARANTINE = "quarantine.jsonl"


class Earlier:
    """The previous run's rows by source, each packed into one bytes value: which file, where, the input's
    digest and the id (manifest) or reason (quarantine); a row's line is read back when it is reused (a
    re-run of 10^6 rows peaks at 433 MB in all, where holding the rows took 4.9 GB: README, Scale)."""

    HEAD = struct.Struct("<BQ?32s")  # file (0 manifest, 1 quarantine), offset, has digest, digest

    def __init__(self, out_dir: Path) -> None:
        self.paths = (out_dir / MANIFEST, out_dir / QUARANTINE)
        self.rows: dict[str, bytes] = {}
        for k, path in enumerate(self.paths):
            if path.is_file():
                self._index(k, path, out_dir)
        self._files = [p.open("rb") if p.is_file() else None for p in self.paths]

    def _index(self, k: int, path: Path, out_dir: Path) -> None:
        offset = 0
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        r = json.loads(line)
                        source, digest, tag = r["source"], r.get("source_sha256"), r["id" if k == 0 else "reason"]
                    except (json.JSONDecodeError, KeyError, TypeError) as err:  # damaged from outside
                        raise DamagedFile(f"{path}:{n}: not a JSON line ({err})",
                                          f"ingest's earlier output is damaged: remove {out_dir} (or `dvc checkout` "
                                          "it) and run ingest again") from None
                    raw = bytes.fromhex(digest) if digest else b""
                    self.rows[source] = self.HEAD.pack(k, offset, bool(raw), raw) + tag.encode()
                offset += len(line)

    def match(self, cand: Candidate, digest: bytes | None) -> tuple[int, str] | None:
        """(file, id or reason) of the earlier row `cand` may reuse: same bytes, and for an input known to be
        bad the same reason; else None."""
        packed = self.rows.get(cand.key)
        if packed is None:
            return None
        k, _, has, raw = self.HEAD.unpack_from(packed)
        tag = packed[self.HEAD.size:].decode()
        if (raw if has else None) != digest or (cand.reject is not None and (k, tag) != (1, cand.reject)):
            return None
        return k, tag

    def line(self, source: str) -> tuple[int, str]:
        """(file, the row's line as written) of an earlier row."""
        k, offset, _, _ = self.HEAD.unpack_from(self.rows[source])
        f = self._files[k]
        f.seek(offset)
        line = f.readline().decode()
        return k, line if line.endswith("\n") else line + "\n"  # a last line cut short still ends its row

    def close(self) -> None:
        for f in self._files:
            if f is not None:
                f.close()
