"""Token sequences for DeSTA rows: the LLM's chat template with the audio spans spliced in.

`<|AUDIO|>` in a user message is shown to the LLM as `<start_audio><|AUDIO|><end_audio>`, and the
`<|AUDIO|>` itself becomes `prompt_size` audio positions (filled with Q-Former vectors in the forward
pass) followed by the transcript's tokens. Labels cover only the response (plus the end-of-turn
token); everything else is -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

AUDIO = "<|AUDIO|>"
START, END = "<start_audio>", "<end_audio>"
IGNORE = -100
PACK_WIDTH = 512  # tokens a packed training sequence may hold: attention costs grow with its square


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    audio_mask: list[bool]  # True at the audio-vector positions
    n_audios: int
    truncated: bool = False  # the response (or the transcript) was cut to fit max_length

    def __len__(self) -> int:
        return len(self.input_ids)


def wrap_audio(content: str) -> str:
    """`<|AUDIO|>` -> `<start_audio><|AUDIO|><end_audio>` unless already wrapped."""
    if START + AUDIO + END in content:
        return content
    return content.replace(AUDIO, START + AUDIO + END)


def row_audios(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `audios` entries of every message, in order (one per `<|AUDIO|>`)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        audios = m.get("audios") or []
        if str(m.get("content", "")).count(AUDIO) != len(audios):
            raise ValueError(f"message has {str(m.get('content', '')).count(AUDIO)} {AUDIO} but {len(audios)} audios")
        out.extend(audios)
    return out


def render_context(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> str:
    """The chat template up to the assistant's turn, with audio markers wrapped."""
    plain = [{"role": m["role"], "content": wrap_audio(str(m["content"]))} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)


def _ids_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of every text, in one batched call: a fast tokenizer's Rust backend gives the ids of one
    call per text without ~0.2 ms of Python per call (and without transformers' per-text BatchEncoding,
    when the backend has no truncation or padding of its own to be switched off); empty text: no tokens."""
    nonempty = [t for t in texts if t]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not nonempty:
        return [[] for _ in texts]
    if backend is not None and backend.truncation is None and backend.padding is None:
        got = iter([e.ids for e in backend.encode_batch(nonempty, add_special_tokens=False)])
    else:
        got = iter(tokenizer(nonempty, add_special_tokens=False)["input_ids"])
    return [next(got) if t else [] for t in texts]


Row = tuple[Sequence[dict[str, Any]], Sequence[str | None], str | None]  # (messages, transcripts, response)


def encode(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    transcripts: Sequence[str | None],
    prompt_size: int,
    response: str | None = None,
    max_length: int | None = None,
    max_transcript_tokens: int = 100,
) -> Encoded | None:
    """Token ids, labels and audio mask of one row; None when even the prompt cannot fit.

    Over max_length, the response is cut from the end first; if the prompt alone does not leave a
    single response token, the transcripts are shortened; if that is not enough, None.
    """
    return encode_many(tokenizer, [(messages, transcripts, response)], prompt_size, max_length,
                       max_transcript_tokens)[0]


def encode_many(tokenizer: Any, rows: Sequence[Row], prompt_size: int, max_length: int | None = None,
                max_transcript_tokens: int = 100, chunk: int = 1024) -> list[Encoded | None]:
    """`encode` of every row, tokenising `chunk` rows' texts per tokenizer call. Rows whose messages are
    the same text (instructions come from a pool) render the chat template once."""
    out: list[Encoded | None] = []
    rendered: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for start in range(0, len(rows), chunk):
        texts: list[str] = []
        spans: list[tuple[int, int, int, bool]] = []  # per row: first text, context pieces, transcripts, response?
        for messages, transcripts, response in rows[start : start + chunk]:
            key = tuple((str(m["role"]), str(m["content"])) for m in messages)
            if key not in rendered:
                rendered[key] = render_context(tokenizer, messages).split(AUDIO)
            pieces = rendered[key]
            if len(pieces) - 1 != len(transcripts):
                raise ValueError(f"{len(pieces) - 1} {AUDIO} markers but {len(transcripts)} audios")
            spans.append((len(texts), len(pieces), len(transcripts), response is not None))
            texts += pieces + [t or "" for t in transcripts]
            texts += [response + tokenizer.eos_token] if response is not None else []
        ids = _ids_many(tokenizer, texts)
        for at, n_pieces, n_trans, has_response in spans:
            trans = [t[:max_transcript_tokens] for t in ids[at + n_pieces : at + n_pieces + n_trans]]
            target = ids[at + n_pieces + n_trans] if has_response else []
            out.append(_assemble(tokenizer, ids[at : at + n_pieces], trans, target, has_response, prompt_size,
                                 max_length))
    return out


def _assemble(tokenizer: Any, text_ids: list[list[int]], trans_ids: list[list[int]], target: list[int],
              has_response: bool, prompt_size: int, max_length: int | None) -> Encoded | None:
    """One row's sequence from its token pieces, fitted to max_length as `encode` says."""
    truncated = False

    def context_len() -> int:
        return sum(map(len, text_ids)) + sum(prompt_size + len(t) for t in trans_ids)

    if max_length is not None:
        room = max_length - context_len()
        need = 1 if has_response else 0
        while room < need and any(trans_ids):  # shorten the longest transcript
            longest = max(range(len(trans_ids)), key=lambda i: len(trans_ids[i]))
            cut = min(len(trans_ids[longest]), need - room)
            trans_ids[longest] = trans_ids[longest][: len(trans_ids[longest]) - cut]
            room, truncated = max_length - context_len(), True
        if room < need:
            return None
        if len(target) > room:
            target, truncated = target[:room], True

    ids: list[int] = []
    mask: list[bool] = []
    for i, piece in enumerate(text_ids):
        ids += piece
        mask += [False] * len(piece)
        if i < len(trans_ids):
            ids += [tokenizer.pad_token_id] * prompt_size + trans_ids[i]
            mask += [True] * prompt_size + [False] * len(trans_ids[i])
    labels = [IGNORE] * len(ids) + target
    ids += target
    mask += [False] * len(target)
    return Encoded(ids, labels, mask, len(trans_ids), truncated)


def _first_label(e: Encoded) -> int:
    return next((i for i, t in enumerate(e.labels) if t != IGNORE), len(e))


def _common_length(rows: Sequence[Encoded], limit: int) -> int:
    """How many of their first `limit` tokens all rows share."""
    first = rows[0].input_ids
    for e in rows[1:]:
        limit = next((i for i, (a, b) in enumerate(zip(first[:limit], e.input_ids[:limit])) if a != b), limit)
    return limit


def shared_prefix(examples: Sequence[Encoded]) -> int:
    """Tokens that rows about the same clips can run once: their common opening, through every audio
    position and short of any scored token's predecessor (each prediction is made inside its own row);
    0 when that leaves no such prefix or a row with nothing of its own."""
    if len(examples) < 2:
        return 0
    n = _common_length(examples, min(len(e) for e in examples))
    n = min([n] + [_first_label(e) - 1 for e in examples])
    audio_end = max(max((i + 1 for i, m in enumerate(e.audio_mask) if m), default=0) for e in examples)
    return n if n >= audio_end and all(len(e) > n for e in examples) else 0


def group_rows(examples: Sequence[Encoded], clips: Sequence[object]) -> list[tuple[list[int], int]]:
    """Indices of `examples` in packable groups, each with its shared prefix: a run of neighbours about
    the same clips (`clips[i]`) that has one is a group; any other row is a group of its own (prefix 0)."""
    runs: list[list[int]] = []
    for i, clip in enumerate(clips):
        if runs and clips[runs[-1][0]] == clip:
            runs[-1].append(i)
        else:
            runs.append([i])
    groups: list[tuple[list[int], int]] = []
    for run in runs:
        n = shared_prefix([examples[i] for i in run])
        groups += [(run, n)] if n else [([i], 0) for i in run]
    return groups


def _common_opening(rows: Sequence[Encoded]) -> int:
    """Tokens every row opens with before any audio or scored token (the chat template's system turn)."""
    n = min(min((i for i, m in enumerate(e.audio_mask) if m), default=len(e)) for e in rows)
    n = min([n] + [_first_label(e) - 1 for e in rows])  # a scored token's predecessor stays in its row
    return _common_length(rows, n)


def pack(
    examples: Sequence[Encoded], clips: Sequence[object], pad_id: int
) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
    """A training batch with each shared token run once: the rows' common opening, then per group of rows
    about the same clips (`group_rows`) its shared prefix, then each row's own tokens; groups fill the
    fewest sequences of PACK_WIDTH tokens (or the longest group's; first fit, longest first). Every token keeps its
    position in its row and sees exactly what it sees unpacked (`visible`, (B, T, T)), so every row's
    loss is its unpacked one. Returns the batch and the groups (indices of `examples`) in layout order."""
    groups = group_rows(examples, clips)
    common = _common_opening(examples)
    parts, sizes = [], []
    for g, n in groups:
        rows = [examples[i] for i in g]
        parts.append([(g[0], rows[0], common, n or len(rows[0]))] + ([(i, e, n, len(e)) for i, e in zip(g, rows)] if n else []))
        sizes.append(sum(b - a for _, _, a, b in parts[-1]))
    bins: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(groups)), key=lambda i: -sizes[i]):
        at = next((k for k in range(len(bins)) if fill[k] + sizes[i] <= max(max(sizes), PACK_WIDTH)), None)
        if at is None:
            at = len(bins)
            bins.append([])
            fill.append(0)
        bins[at].append(i)
        fill[at] += sizes[i]
    shape = (len(bins), common + max(fill))
    out = {"input_ids": torch.full(shape, pad_id, dtype=torch.long),
           "labels": torch.full(shape, IGNORE, dtype=torch.long),
           "attention_mask": torch.zeros(shape, dtype=torch.long),
           "audio_mask": torch.zeros(shape, dtype=torch.bool),
           "position_ids": torch.zeros(shape, dtype=torch.long),
           "label_rows": torch.full(shape, -1, dtype=torch.long)}  # which example a token's label belongs to
    part = torch.full(shape, -1, dtype=torch.long)  # which run of tokens; 0 = the common opening
    sees = torch.full(shape, -1, dtype=torch.long)  # the group prefix a row's tokens continue
    for row, members in enumerate(bins):
        runs = [(-1, examples[0], 0, common, 0, 0)]  # (example, row, start, end, run id, the prefix run it continues)
        for i in members:
            prefix = len(runs)
            runs += [(x, e, a, b, prefix + k, prefix) for k, (x, e, a, b) in enumerate(parts[i])]
        at = 0
        for x, e, a, b, pid, pre in runs:
            span = slice(at, at + b - a)
            out["label_rows"][row, span] = x
            out["input_ids"][row, span] = torch.tensor(e.input_ids[a:b], dtype=torch.long)
            out["labels"][row, span] = torch.tensor(e.labels[a:b], dtype=torch.long)
            out["audio_mask"][row, span] = torch.tensor(e.audio_mask[a:b], dtype=torch.bool)
            out["position_ids"][row, span] = torch.arange(a, b)
            out["attention_mask"][row, span] = 1
            part[row, span], sees[row, span] = pid, pre
            at += b - a
    idx = torch.arange(shape[1])
    key = part[:, None, :]
    seen = out["attention_mask"].bool()[:, None, :] & ((key == 0) | (key == part[:, :, None]) | (key == sees[:, :, None]))
    out["visible"] = (idx[None, :] <= idx[:, None]) & seen | torch.eye(shape[1], dtype=torch.bool)  # padding: itself
    return out, [groups[i][0] for members in bins for i in members]


def collate(examples: Sequence[Encoded], pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the longest (right for training, left for generation)."""
    width = max(len(e) for e in examples)
    out = {
        "input_ids": torch.full((len(examples), width), pad_id, dtype=torch.long),
        "labels": torch.full((len(examples), width), IGNORE, dtype=torch.long),
        "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
        "audio_mask": torch.zeros((len(examples), width), dtype=torch.bool),
    }
    for row, e in enumerate(examples):
        span = slice(width - len(e), width) if left else slice(0, len(e))
        out["input_ids"][row, span] = torch.tensor(e.input_ids)
        out["labels"][row, span] = torch.tensor(e.labels)
        out["attention_mask"][row, span] = 1
        out["audio_mask"][row, span] = torch.tensor(e.audio_mask)
    return out
