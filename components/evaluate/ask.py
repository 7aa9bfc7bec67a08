"""Questions to the trained model (with audio) or to its frozen backbone (text only), in batches.

Nothing is computed twice (components/model/decode.py): identical contexts (the text-only prior asks
the same question of many clips) are asked once; the part of a context its rows share (a clip's system
turn, audio and transcript before each question about it; the system turn of text-only chats) is
prefilled once per batch and each row continues it with its own tokens; the greedy answer and the
options' scores both read that one KV cache; every held-out clip is encoded and connected once for
all the questions asked about it. The LLM is frozen, so a shared part's state is the same for every
row that opens with it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.audio import read_audio_ref
from components.model import decode
from components.model import prompt as P
from components.model.encoder import valid_frames

Settled = Callable[[int, str], bool]  # (row index, text so far) -> the rest cannot change what is read


@dataclass(frozen=True)
class Row:
    """One context: its token ids, the audio-vector positions and the clips filling them, in order."""

    ids: tuple[int, ...]
    audio: tuple[bool, ...]
    clips: tuple[str, ...] = ()


class Asker:
    """Greedy answers and option log-likelihoods of one model, a batch of contexts per LLM prefill."""

    def __init__(self, model: Any, data_root: Path, batch_size: int = 16, clip_batch: int = 8) -> None:
        self.m, self.root, self.batch, self.clip_batch = model, Path(data_root), batch_size, clip_batch
        self.tok = model.tokenizer
        self.vectors: dict[str, torch.Tensor] = {}  # clip reference -> connector vectors (prompt_size, width)
        self.heard: dict[str, str] = {}  # clip reference -> Whisper's transcript

    # ---- contexts -------------------------------------------------------------------------------
    def hear(self, refs: Sequence[str], advance: Callable[[int], None] | None = None,
             decode: Callable[[np.ndarray], list[str]] | None = None) -> dict[str, str]:
        """Encode and connect every clip not seen yet, once; returns Whisper's transcript of each, decoded
        from that same encoder pass (DestaModel.hear: `decode` another engine's decoder, else the model's)."""
        todo = [r for r in dict.fromkeys(refs) if r not in self.vectors]
        for lo in range(0, len(todo), self.clip_batch):
            chunk = todo[lo : lo + self.clip_batch]
            wavs = [read_audio_ref(self.root, r)[0] for r in chunk]
            with torch.inference_mode():
                states, texts = self.m.hear(wavs, self.clip_batch, decode)
                vectors = self.m.connect(states, valid_frames(wavs))
            self.vectors.update(zip(chunk, vectors))
            self.heard.update(zip(chunk, texts))
            if advance:
                advance(len(chunk))
        return {r: self.heard[r] for r in refs}

    def audio_rows(self, messages: Sequence[Sequence[dict]]) -> list[Row]:
        """Rows whose `<|AUDIO|>` entries carry a clip reference and its transcript."""
        cfg = self.m.spec.model
        audios = [P.row_audios(msgs) for msgs in messages]
        encoded = P.encode_many(self.tok, [(msgs, [a.get("text") or "" for a in au], None) for msgs, au in zip(messages, audios)],
                                cfg.prompt_size, max_transcript_tokens=cfg.max_transcript_tokens)
        return [Row(tuple(enc.input_ids), tuple(enc.audio_mask), tuple(str(a["audio"]) for a in au))
                for enc, au in zip(encoded, audios)]

    def text_rows(self, system: str, prompts: Sequence[str]) -> list[Row]:
        """Text-only chats (the backbone without audio)."""
        rows = []
        for p in prompts:
            text = self.tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": p}],
                                                tokenize=False, add_generation_prompt=True)
            ids = tuple(self.tok(text, add_special_tokens=False).input_ids)
            rows.append(Row(ids, (False,) * len(ids)))
        return rows

    def option_ids(self, options: Sequence[str], eos: bool) -> list[list[int]]:
        """Token ids of each option (+ the end-of-turn token when the answer is scored as complete)."""
        return [self.tok(o + (self.tok.eos_token if eos else ""), add_special_tokens=False).input_ids for o in options]

    # ---- asking -----------------------------------------------------------------------------------
    def ask(self, rows: Sequence[Row], max_new_tokens: int, options: Sequence[list[list[int]]] | None = None,
            settled: Settled | None = None, advance: Callable[..., None] | None = None,
            phase: str = "") -> tuple[list[str], list[list[float]]]:
        """Each row's greedy answer and (when `options`) its options' summed log-probabilities."""
        first: dict[Row, int] = {}
        for i, row in enumerate(rows):
            first.setdefault(row, i)  # identical contexts (and so identical options) are asked once
        asked = Counter(rows)
        distinct = list(first)
        cuts = _shared_cuts(distinct)
        answers: dict[Row, str] = {}
        scores: dict[Row, list[float]] = {}
        eos = self.m.eos_ids()
        for lo in range(0, len(distinct), self.batch):
            batch = distinct[lo : lo + self.batch]
            opts = [options[first[r]] for r in batch] if options is not None else []
            ctx = self._context(batch, [cuts[r] for r in batch], max(max_new_tokens, decode.option_room(opts)))
            stop = None if settled is None else (lambda j, toks, b=batch: settled(first[b[j]], self._text(toks)))
            with self.m.autocast():
                if options is not None:
                    scores.update(zip(batch, decode.score_options(self.m.llm, ctx, opts)))
                tokens = decode.greedy(self.m.llm, ctx, max_new_tokens, eos, self.tok.pad_token_id, settled=stop, compact=True)
            answers.update((r, self._text(t)) for r, t in zip(batch, tokens))
            if advance:
                advance(sum(asked[r] for r in batch), phase=phase)
        return [answers[r] for r in rows], [scores[r] for r in rows] if options is not None else []

    def _context(self, batch: list[Row], cuts: list[int], room: int) -> decode.Context:
        """Prefill the distinct shared parts `row.ids[:cut]` of the batch once, then each row's own tokens."""
        bases: dict[tuple, int] = {}
        for row, cut in zip(batch, cuts):
            bases.setdefault((row.ids[:cut], row.audio[:cut], row.clips), len(bases))
        width = max(len(ids) for ids, _, _ in bases)
        ids = torch.full((len(bases), width), self.tok.pad_token_id)
        mask = torch.zeros((len(bases), width), dtype=torch.long)
        audio = torch.zeros((len(bases), width), dtype=torch.bool)
        vectors = []
        for b, (base_ids, base_audio, clips) in enumerate(bases):
            ids[b, width - len(base_ids):], mask[b, width - len(base_ids):] = torch.tensor(base_ids), 1
            audio[b, width - len(base_ids):] = torch.tensor(base_audio)
            vectors += [self.vectors[c] for c in clips]
        dev = self.m.device
        with torch.inference_mode(), self.m.autocast():
            if vectors:
                embeds = self.m.splice(ids.to(dev), audio.to(dev), torch.stack(vectors))
            else:
                embeds = self.m.llm.get_input_embeddings()(ids.to(dev))
            base = decode.prefill(self.m.llm, embeds, mask.to(dev))
            picks = [bases[(row.ids[:cut], row.audio[:cut], row.clips)] for row, cut in zip(batch, cuts)]
            return decode.extend(self.m.llm, base, picks, [row.ids[cut:] for row, cut in zip(batch, cuts)],
                                 self.tok.pad_token_id, room=room)

    def _text(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens, skip_special_tokens=True).strip()


def _shared_cuts(rows: Sequence[Row]) -> dict[Row, int]:
    """Where each row's shared part ends: the prefix common to the rows with its clips (all text-only rows
    form one group), past its last audio position and short of its last token (a row's own tokens)."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(row.clips, []).append(row)
    cuts = {}
    for group in groups.values():
        common = len(os.path.commonprefix([r.ids for r in group])) if len(group) > 1 else len(group[0].ids)
        for row in group:
            after_audio = max((i + 1 for i, a in enumerate(row.audio) if a), default=0)
            cuts[row] = min(max(common, after_audio), len(row.ids) - 1)
    return cuts
