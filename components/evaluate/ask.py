"""Questions to the trained model (with audio) or to its frozen backbone (text only), in batches.

Each batch of contexts is run through the LLM once (components/model/decode.py): the greedy answer
and the scores of the options both read that one KV cache, and every held-out clip is encoded and
connected once for all the questions asked about it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from components.audio import read_audio_ref
from components.model import decode
from components.model import prompt as P
from components.model.encoder import valid_frames

Settled = Callable[[int, str], bool]  # (row index, text so far) -> the rest cannot change what is read


class Asker:
    """Greedy answers and option log-likelihoods of one model, a batch of contexts per LLM prefill."""

    def __init__(self, model: Any, data_root: Path, batch_size: int = 16, clip_batch: int = 8) -> None:
        self.m, self.root, self.batch, self.clip_batch = model, Path(data_root), batch_size, clip_batch
        self.tok = model.tokenizer
        self.vectors: dict[str, torch.Tensor] = {}  # clip reference -> connector vectors (prompt_size, width)

    # ---- contexts -------------------------------------------------------------------------------
    def hear(self, refs: Sequence[str], advance: Callable[[int], None] | None = None) -> None:
        """Encode and connect every clip not seen yet, once."""
        todo = [r for r in dict.fromkeys(refs) if r not in self.vectors]
        for lo in range(0, len(todo), self.clip_batch):
            chunk = todo[lo : lo + self.clip_batch]
            wavs = [read_audio_ref(self.root, r)[0] for r in chunk]
            with torch.inference_mode():
                vectors = self.m.connect(self.m.encode(wavs, batch_size=self.clip_batch), valid_frames(wavs))
            self.vectors.update(zip(chunk, vectors))
            if advance:
                advance(len(chunk))

    def audio_context(self, messages: Sequence[Sequence[dict]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded embeddings of rows whose `<|AUDIO|>` entries carry a reference and a transcript."""
        cfg = self.m.spec.model
        enc, vectors = [], []
        for msgs in messages:
            audios = P.row_audios(msgs)
            enc.append(P.encode(self.tok, msgs, [a.get("text") or "" for a in audios], cfg.prompt_size,
                                max_transcript_tokens=cfg.max_transcript_tokens))
            vectors += [self.vectors[str(a["audio"])] for a in audios]
        batch = P.collate(enc, self.tok.pad_token_id, left=True)
        dev = self.m.device
        with torch.inference_mode():
            embeds = self.m.splice(batch["input_ids"].to(dev), batch["audio_mask"].to(dev), torch.stack(vectors))
        return embeds, batch["attention_mask"].to(dev)

    def text_context(self, system: str, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded embeddings of text-only chats (the backbone without audio)."""
        ids = [self.tok(self.tok.apply_chat_template([{"role": "system", "content": system},
                                                      {"role": "user", "content": p}],
                                                     tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False).input_ids for p in prompts]
        width = max(map(len, ids))
        batch = torch.full((len(ids), width), self.tok.pad_token_id)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, row in enumerate(ids):
            batch[r, width - len(row):], mask[r, width - len(row):] = torch.tensor(row), 1
        dev = self.m.device
        with torch.inference_mode():
            return self.m.llm.get_input_embeddings()(batch.to(dev)), mask.to(dev)

    def option_ids(self, options: Sequence[str], eos: bool) -> list[list[int]]:
        """Token ids of each option (+ the end-of-turn token when the answer is scored as complete)."""
        return [self.tok(o + (self.tok.eos_token if eos else ""), add_special_tokens=False).input_ids for o in options]

    # ---- asking -----------------------------------------------------------------------------------
    def ask(self, context: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]], n: int, max_new_tokens: int,
            options: Sequence[list[list[int]]] | None = None, settled: Settled | None = None,
            advance: Callable[..., None] | None = None, phase: str = "") -> tuple[list[str], list[list[float]]]:
        """Rows [0, n) in batches: `context(lo, hi)` gives their embeddings and mask; returns each row's
        answer and (when `options`) its options' summed log-probabilities."""
        answers: list[str] = []
        scores: list[list[float]] = []
        eos = self.m.eos_ids()
        for lo in range(0, n, self.batch):
            hi = min(lo + self.batch, n)
            embeds, mask = context(lo, hi)
            stop = None if settled is None else (lambda r, toks, lo=lo: settled(lo + r, self._text(toks)))
            with self.m.autocast():
                ctx = decode.prefill(self.m.llm, embeds, mask)
                if options is not None:
                    scores += decode.score_options(self.m.llm, ctx, options[lo:hi])
                tokens = decode.greedy(self.m.llm, ctx, max_new_tokens, eos, self.tok.pad_token_id, settled=stop)
            answers += [self._text(t) for t in tokens]
            if advance:
                advance(hi - lo, phase=phase)
        return answers, scores

    def _text(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens, skip_special_tokens=True).strip()
