"""Training data: DeSTA-AQA5M rows + their stored audio, as length-bucketed, resumable batches.

The batch plan is a pure function of (seed, epoch, row lengths, batch shape), so a resumed run
rebuilds it and continues at the same optimizer step, on the same rows.
"""

from __future__ import annotations

import hashlib
import json
import random
import tarfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path
from typing import Any

import torch

from components.audio import shard_members, split_ref
from components.model import prompt as P
from components.records import label_shards

ROW_KEYS = ("id", "dataset", "seed_description", "prompt", "response", "messages")
BUCKET_BATCHES = 64  # micro-batches per length bucket (sorted within, shuffled across)


class TrainDataError(ValueError):
    """The training rows or their audio are missing or malformed; the message says which."""


def row_files(path: Path) -> list[Path]:
    """A JSONL file, or the shards of a finished label run (`shards/`, listed by its provenance), else a
    directory's `*.jsonl`."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TrainDataError(f"training rows not found: {path} (run `desta label` first, or pass --in)")
    try:
        files = label_shards(path)
    except ValueError as err:
        raise TrainDataError(str(err)) from None
    files = files if files is not None else sorted(path.rglob("*.jsonl"))
    if not files:
        raise TrainDataError(f"no training rows: {path} holds no .jsonl files (run `desta label` first)")
    return files


def iter_rows(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """Every row, streamed file by file and checked for the DeSTA-AQA5M fields; a bad row names its file and
    line; no row at all is an error too."""
    n_rows = 0
    for f in files:
        with f.open() as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise TrainDataError(f"{f}:{n}: invalid JSON ({err})") from None
                missing = [k for k in ROW_KEYS if k not in row]
                if missing or not isinstance(row.get("messages"), list) or not isinstance(row.get("response"), str):
                    raise TrainDataError(f"{f}:{n}: not a DeSTA-AQA5M row (missing {missing or 'messages/response'})")
                try:
                    P.row_audios(row["messages"])
                except ValueError as err:
                    raise TrainDataError(f"{f}:{n}: {err}") from None
                n_rows += 1
                yield row
    if not n_rows:
        raise TrainDataError(f"no training rows in {', '.join(map(str, files))}")


def read_rows(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Every row (`iter_rows`), in a list."""
    return list(iter_rows(files))


def rows_digest(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def check_audio(rows: Iterable[dict[str, Any]], data_root: Path) -> None:
    """Every audio reference resolves to a stored clip; else one error listing the missing ones."""
    missing: list[str] = []
    for row in rows:
        for a in P.row_audios(row["messages"]):
            ref = a.get("audio")
            try:
                shard, member = split_ref(data_root, str(ref))
                # the shard's member index (read once per shard and cached by the shards module)
                if member not in shard_members(shard, shard.stat().st_mtime_ns):
                    raise KeyError(member)
            except (ValueError, OSError, KeyError, tarfile.TarError):
                missing.append(f"{row['id']}: {ref}")
    if missing:
        shown = "\n  ".join(missing[:5])
        raise TrainDataError(f"{len(missing)} audio reference(s) missing under data root {data_root}:\n  {shown}"
                             + ("\n  …" if len(missing) > 5 else ""))


class Packed(Sequence):
    """Encoded rows in flat arrays (int32 ids and labels, a byte per mask position, row offsets): ~9 bytes a
    token, where the rows and their tokens as Python lists took ~10 KB a row (1 GB a rank at 10^5 rows, simulated).
    Item i is row i's `P.Encoded` (None for a skipped row), rebuilt when asked for."""

    def __init__(self) -> None:
        self._ids, self._labels, self._mask = array("i"), array("i"), array("b")
        self._starts, self._audios, self._cut = array("q", [0]), array("b"), array("b")

    def append(self, ex: P.Encoded | None) -> None:
        if ex is not None:
            self._ids.extend(ex.input_ids)
            self._labels.extend(ex.labels)
            self._mask.extend(map(int, ex.audio_mask))
        self._starts.append(len(self._ids))
        self._audios.append(-1 if ex is None else ex.n_audios)
        self._cut.append(bool(ex and ex.truncated))

    def extend_from(self, other: Packed, a: int, b: int) -> None:
        """Append rows a..b-1 of `other` (array slices: no row is rebuilt)."""
        t0, t1, base = other._starts[a], other._starts[b], len(self._ids)
        self._ids.extend(other._ids[t0:t1])
        self._labels.extend(other._labels[t0:t1])
        self._mask.extend(other._mask[t0:t1])
        self._starts.extend(array("q", (s - t0 + base for s in other._starts[a + 1 : b + 1])))
        self._audios.extend(other._audios[a:b])
        self._cut.extend(other._cut[a:b])

    def __len__(self) -> int:
        return len(self._audios)

    def __getitem__(self, i: int) -> P.Encoded | None:  # type: ignore[override]
        i = i + len(self) if i < 0 else i
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._audios[i] < 0:
            return None
        a, b = self._starts[i], self._starts[i + 1]
        return P.Encoded(self._ids[a:b].tolist(), self._labels[a:b].tolist(), [bool(m) for m in self._mask[a:b]],
                         self._audios[i], bool(self._cut[i]))


@dataclass
class EncodedRows:
    """The tokenised rows (same order as the input), and what truncation did."""

    examples: Packed
    refs: list[list[str]]
    truncated: int = 0
    skipped: int = 0
    lengths: list[int] = field(default_factory=list)
    chunk: int = 1024  # rows per tokenizer call; a share (`encode_rows(part=...)`) holds whole chunks

    @classmethod
    def merged(cls, shares: Sequence[EncodedRows]) -> EncodedRows:
        """The whole from every rank's share (`encode_rows(part=(k, n))` for k < n): chunk j is share j % n's."""
        n, chunk = len(shares), shares[0].chunk
        out, taken = cls(Packed(), [], chunk=chunk), [0] * n
        for j in range(sum(-(-len(s.refs) // chunk) for s in shares)):
            share, a = shares[j % n], taken[j % n]
            b = min(a + chunk, len(share.refs))
            out.examples.extend_from(share.examples, a, b)
            out.refs += share.refs[a:b]
            out.lengths += share.lengths[a:b]
            taken[j % n] = b
        out.truncated, out.skipped = sum(s.truncated for s in shares), sum(s.skipped for s in shares)
        return out


def encode_rows(rows: Iterable[dict[str, Any]], tokenizer: Any, prompt_size: int, max_length: int,
                max_transcript_tokens: int, chunk: int = 1024, part: tuple[int, int] = (0, 1)) -> EncodedRows:
    """Token ids + response-only labels for every row, `chunk` rows at a time (rows may be streamed: only the
    packed tokens are kept); over-long rows are cut (counted) or skipped. With `part=(k, n)` only chunks k,
    k+n, k+2n, ... are tokenised (rank k of n's share; `EncodedRows.merged` joins the shares)."""
    out = EncodedRows(Packed(), [], chunk=chunk)
    rows = iter(rows)
    k, n = part
    for j in count():
        part_rows = list(islice(rows, chunk))
        if not part_rows:
            break
        if j % n != k:
            continue
        audios = [P.row_audios(row["messages"]) for row in part_rows]
        encoded = P.encode_many(tokenizer, [(row["messages"], [a.get("text") for a in au], row["response"])
                                            for row, au in zip(part_rows, audios)],
                                prompt_size, max_length, max_transcript_tokens, chunk)
        for au, ex in zip(audios, encoded):
            out.examples.append(ex)
            out.refs.append([str(a["audio"]) for a in au])
            out.lengths.append(len(ex) if ex else 0)
            out.truncated += bool(ex and ex.truncated)
            out.skipped += ex is None
    return out


@dataclass(frozen=True)
class Plan:
    """Batch shape: micro-batch per rank, ranks, accumulation steps."""

    batch_size: int
    world: int
    accum: int
    seed: int

    @property
    def micro_per_step(self) -> int:
        return self.world * self.accum

    def epoch(self, lengths: Sequence[int], epoch: int,
              clips: Sequence[object] | None = None) -> list[list[list[int]]]:
        """Optimizer steps of one epoch; each is world*accum micro-batches of row indices.

        Rows are shuffled, cut into buckets of BUCKET_BATCHES micro-batches, sorted by length within
        a bucket (little padding), and the micro-batches shuffled again. With `clips` (a key per row:
        the clips it is about), the rows of one clip are shuffled as a unit and stay neighbours in the
        bucket's order (sorted by the unit's tokens), so a micro-batch can run their shared prefix once
        (`prompt.pack`). Incomplete micro-batches and steps at the end of an epoch are dropped (every
        rank does the same number of steps)."""
        rng = random.Random(self.seed * 100_003 + epoch)
        if clips is None:
            order = [i for i in range(len(lengths)) if lengths[i] > 0]
            rng.shuffle(order)
            key: Any = lengths.__getitem__
        else:
            units: dict[object, list[int]] = {}
            for i in range(len(lengths)):
                if lengths[i] > 0:
                    units.setdefault(clips[i], []).append(i)
            shuffled = list(units.values())
            rng.shuffle(shuffled)
            order = [i for unit in shuffled for i in unit]
            unit_of = {i: u for u, unit in enumerate(shuffled) for i in unit}
            size = [sum(lengths[i] for i in unit) for unit in shuffled]

            def key(i: int) -> tuple[int, int]:  # the unit's tokens, then the unit: its rows stay neighbours
                return size[unit_of[i]], unit_of[i]
        micro: list[list[int]] = []
        span = self.batch_size * BUCKET_BATCHES
        for b in range(0, len(order), span):
            bucket = sorted(order[b : b + span], key=key)
            micro += [bucket[i : i + self.batch_size] for i in range(0, len(bucket) - self.batch_size + 1, self.batch_size)]
        rng.shuffle(micro)
        n = len(micro) // self.micro_per_step
        return [micro[s * self.micro_per_step : (s + 1) * self.micro_per_step] for s in range(n)]

    def mine(self, step_batches: list[list[int]], rank: int) -> list[list[int]]:
        """This rank's micro-batches of one optimizer step."""
        return step_batches[rank * self.accum : (rank + 1) * self.accum]


def micro_batch(enc: EncodedRows, idx: Sequence[int], pad_id: int, pack: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A micro-batch's tensors and the clips whose states fill its audio positions, in order: the rows
    collated, or (`pack`, train.pack_clip_rows) each clip's rows packed after their shared prefix."""
    examples = [enc.examples[i] for i in idx]
    if not pack:
        return P.collate(examples, pad_id), [r for i in idx for r in enc.refs[i]]
    batch, groups = P.pack(examples, [tuple(enc.refs[i]) for i in idx], pad_id)
    return batch, [r for g in groups for r in enc.refs[idx[g[0]]]]


def sample_refs(refs: Sequence[Sequence[str]], n: int) -> list[str]:
    """Up to n distinct clips of the rows, in hash order: the same sample on every rank and run,
    spread over the corpus rather than its first shard."""
    distinct = {r for rs in refs for r in rs}
    return sorted(distinct, key=lambda r: hashlib.sha256(r.encode()).hexdigest())[:n]


def total_steps(steps_per_epoch: int, epochs: int, max_steps: int | None) -> int:
    total = steps_per_epoch * epochs
    return min(total, max_steps) if max_steps else total
