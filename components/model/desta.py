"""DeSTA2.5-Audio: frozen Whisper encoder -> Q-Former connector -> frozen LLM (optional LoRA).

Only the connector (and LoRA adapters) train. `save_pretrained` writes just those weights
(safetensors) and a config naming the frozen backbones; `from_pretrained` rebuilds the model from
the backbones and loads them. The same code builds the tiny profile (whisper tiny.en + SmolLM2)
and the paper's (whisper-large-v3 + Llama-3.1-8B-Instruct).

Precision `bf16`: the LLM is stored in bf16 (as the official model loads it) and every forward runs
under bf16 autocast; trainable weights stay fp32 (the official trainer's bf16-mixed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.audio import read_audio_ref
from components.measure import heard_speech
from components.model import prompt as P
from components.model.backbones import DestaSpec, LossOutput, load_backbones  # noqa: F401 -- DestaSpec: a public type here
from components.model.encoder import audio_key, encode_states, log_mel, tapped_states, valid_frames
from components.model.encoder import states_dtype as dtype_for
from components.model.export import read_export, write_export
from components.model.qformer import Connector
from components.model.transcribe import quiet_whisper_generate
from components.modeldir import backbone_digest
from components.precision import resolve as resolve_precision


class DestaModel(nn.Module):
    def __init__(self, spec: DestaSpec, whisper: nn.Module, llm: nn.Module, tokenizer: Any, processor: Any,
                 precision: str = "bf16") -> None:
        super().__init__()
        cfg = spec.model
        self.spec, self.precision = spec, precision
        self.whisper, self.llm, self.tokenizer, self.processor = whisper, llm, tokenizer, processor
        if tokenizer.pad_token is None:  # Llama 3 has none; padded positions are masked anyway
            tokenizer.pad_token = tokenizer.eos_token
        if cfg.lora.enabled:
            from peft import LoraConfig, inject_adapter_in_model

            inject_adapter_in_model(
                LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                           target_modules=list(cfg.lora.target_modules)),
                self.llm,
            )
            for name, p in self.llm.named_parameters():  # trainable weights in fp32, like the connector
                if "lora_" in name:
                    p.data = p.data.float()
        if max(cfg.encoder_layers) > len(self.encoder.layers):
            raise ValueError(f"model.encoder_layers {cfg.encoder_layers}: {spec.whisper} has {len(self.encoder.layers)} layers")
        enc_cfg = self.encoder.config
        embed = self.llm.get_input_embeddings()
        self.connector = Connector(
            n_layers=len(cfg.encoder_layers), width=enc_cfg.d_model, llm_width=embed.embedding_dim,
            prompt_size=cfg.prompt_size, heads=cfg.qformer_heads, qformer_layers=cfg.qformer_layers,
            ffn=cfg.qformer_intermediate, dropout=cfg.qformer_dropout, normalize=cfg.normalize_states,
        )
        self.connector.scale_output_to(float(embed.weight.detach().float().std()))
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith("connector.") or "lora_" in name)
        self.eval()  # inference by default (no Q-Former dropout); training calls .train() itself
        self.reuse_frozen_head = False  # training: see `forward` (train.reuse_frozen_head)
        self.loss_average = "token"  # training: see `forward` (train.loss_average)
        self._heads: dict[tuple, list] = {}  # (device, head tokens) -> the frozen LLM's KV state after them

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_backbones(cls, spec: DestaSpec, precision: str = "bf16", with_decoder: bool = True,
                       device: str = "cpu") -> DestaModel:
        """The untrained model; `precision` as it runs on `device` (bf16 falls back to fp32 on CPUs without it)."""
        precision = resolve_precision(precision, device)
        return cls(spec, *load_backbones(spec.whisper, spec.llm, precision, with_decoder), precision=precision)

    @property
    def encoder(self) -> nn.Module:
        return self.whisper.model.encoder

    def detach_whisper(self) -> None:
        """Keep Whisper as a plain attribute outside the module tree (training: each rank holds its
        own full frozen copy outside DeepSpeed, so ranks run it independently, e.g. on cache misses,
        without ZeRO-3 collectives). encode/transcribe keep working; `.to()` no longer moves it."""
        whisper = self._modules.pop("whisper")
        self.__dict__["whisper"] = whisper

    def train(self, mode: bool = True) -> DestaModel:
        super().train(mode)
        self.whisper.eval()  # frozen encoder: no dropout; the LLM follows (LoRA dropout)
        return self

    @property
    def device(self) -> torch.device:
        return self.connector.proj[1].weight.device

    @property
    def feature_extractor(self) -> Any:
        """Whisper's log-mel extractor (the processor's, or the processor itself when built bare)."""
        return getattr(self.processor, "feature_extractor", self.processor)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @property
    def states_dtype(self) -> torch.dtype:
        """dtype of the tapped states the connector reads (what the encoder cache stores)."""
        return dtype_for(self.precision)

    # ---- audio side ---------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wavs: Sequence[np.ndarray], batch_size: int = 8) -> torch.Tensor:
        """16 kHz clips -> tapped encoder states (N, L, 1500, d), in `states_dtype`."""
        return encode_states(self.feature_extractor, self.encoder, self.spec.model.encoder_layers, wavs,
                             self.precision == "bf16", batch_size)

    def connect(self, states: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Tapped states (+ each clip's real encoder positions) -> (N, prompt_size, llm width) vectors.
        `frames` is used only when the spec says `mask_padding` (the official connector reads all 1500)."""
        if self.precision != "bf16":
            states = states.to(self.connector.proj[1].weight.dtype)
        with self.autocast():
            return self.connector(states, frames if self.spec.model.mask_padding else None)

    @torch.no_grad()
    def fit_state_stats(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Set the connector's input standardisation from (states, real frames) batches: the mean and
        std of each tapped feature over the positions the connector reads. Returns the clips seen."""
        total = sq = None
        count, clips = 0, 0
        for states, frames in batches:
            x = states.double()  # (N, L, T, d); float64 sums: millions of positions on big corpora
            if self.spec.model.mask_padding:
                keep = torch.arange(x.shape[2], device=x.device)[None, :] < frames.to(x.device)[:, None]  # (N, T)
                x = x.transpose(1, 2)[keep]  # (positions, L, d)
            else:
                x = x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])
            total = x.sum(0) if total is None else total + x.sum(0)
            sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
            count, clips = count + x.shape[0], clips + states.shape[0]
        if not count:
            raise ValueError("no encoder states to compute the connector's input statistics from")
        mean = total / count
        std = (sq / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)  # a dead feature stays finite
        self.connector.set_state_stats(mean.float(), std.float())
        return clips

    @torch.no_grad()
    def hear(self, wavs: Sequence[np.ndarray], batch_size: int = 8,
             decode: Callable[[np.ndarray], list[str]] | None = None) -> tuple[torch.Tensor, list[str]]:
        """16 kHz clips -> (tapped states as `encode` gives them, Whisper's greedy transcripts) from one
        encoder pass: the transcript is decoded from that pass's output, by this model's HF decoder or by
        `decode` (another engine over the same weights, e.g. CTranslate2). That engine runs fp32, so under
        bf16 it gets the log-mel features and encodes them itself: its decoder on a bf16 encoder output
        transcribed 21 of 138 held-out clips differently, WER 0.537 -> 0.811. '' where no speech is heard."""
        if decode is None and (not hasattr(self.whisper.model, "decoder") or not hasattr(self.processor, "batch_decode")):
            raise ValueError("transcripts needed but this model was built without Whisper's decoder/tokenizer")
        states, texts = [], []
        for i in range(0, len(wavs), batch_size):
            feats = log_mel(self.feature_extractor, wavs[i : i + batch_size]).to(self.device)
            with self.autocast():
                taps, final = tapped_states(self.encoder, feats, self.spec.model.encoder_layers, final=True)
                states.append(taps.to(self.states_dtype))
                given = (feats if self.precision == "bf16" else final) if decode is not None else None
                texts += self._whisper_text(final) if given is None else [t.strip() for t in decode(given.float().cpu().numpy())]
        return torch.cat(states), heard_speech(texts, list(wavs))

    def _whisper_text(self, final: torch.Tensor) -> list[str]:
        from transformers.modeling_outputs import BaseModelOutput

        with quiet_whisper_generate():
            ids = self.whisper.generate(encoder_outputs=BaseModelOutput(last_hidden_state=final), do_sample=False,
                                        num_beams=1, max_new_tokens=128)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def transcribe(self, wavs: Sequence[np.ndarray], batch_size: int = 8) -> list[str]:
        """Whisper's own transcript (greedy); '' where it hears no speech. A batch at a time: the tapped
        states of the shared pass are dropped as it goes, not held for every clip."""
        return [t for i in range(0, len(wavs), batch_size) for t in self.hear(wavs[i : i + batch_size], batch_size)[1]]

    # ---- LLM side -----------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, audio_mask: torch.Tensor, audio_states: torch.Tensor,
              audio_frames: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the audio positions replaced by the connector's vectors."""
        return self.splice(input_ids, audio_mask, self.connect(audio_states, audio_frames))

    def splice(self, input_ids: torch.Tensor, audio_mask: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the audio positions replaced by connector vectors (N clips, prompt_size, width)."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        if int(audio_mask.sum()) != audio.shape[0] * audio.shape[1]:
            raise ValueError(f"{int(audio_mask.sum())} audio positions for {audio.shape[0]} clips x {audio.shape[1]} vectors")
        return embeds.masked_scatter(audio_mask.unsqueeze(-1), audio.to(embeds.dtype))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, audio_mask: torch.Tensor,
                audio_states: torch.Tensor, labels: torch.Tensor, audio_frames: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, visible: torch.Tensor | None = None,
                label_rows: torch.Tensor | None = None) -> LossOutput:
        """Next-token loss on the labelled (response) positions only; logits only where scored: the mean over
        tokens, or with `loss_average = "row"` the mean over rows of each row's token mean. Packed rows
        (`prompt.pack`) bring their positions, what each token sees and the example each label belongs to
        (`label_rows`); `row_logprob` is then per sequence."""
        embeds = self.embed(input_ids, audio_mask, audio_states, audio_frames)
        head = self._frozen_head(input_ids, attention_mask, audio_mask, labels) if self.reuse_frozen_head else 0
        mask = attention_mask if visible is None else visible[:, None, head:]
        with self.autocast():
            decoder = self.llm.get_decoder()
            if head:  # the rows' common text before the first audio: its KV state is the same every step
                cache = self._head_cache(input_ids[0, :head], len(input_ids))
                pos = position_ids[:, head:] if position_ids is not None else \
                    torch.arange(head, input_ids.shape[1], device=input_ids.device)[None].expand(len(input_ids), -1)
                hidden = decoder(inputs_embeds=embeds[:, head:], attention_mask=mask, position_ids=pos,
                                 cache=cache, use_cache=True).last_hidden_state
            else:
                hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).last_hidden_state
            targets = labels[:, head + 1:]
            scored = targets != P.IGNORE
            logits = self.llm.get_output_embeddings()(hidden[:, :-1][scored])
        token_logp = -F.cross_entropy(logits.float(), targets[scored], reduction="none")
        rows = scored.nonzero()[:, 0]
        row_logprob = torch.zeros(labels.shape[0], device=logits.device).index_add(0, rows, token_logp)
        n = int(scored.sum())
        if self.loss_average == "row":
            owner = label_rows[:, head + 1:][scored] if label_rows is not None else rows
            _, which, counts = torch.unique(owner, return_inverse=True, return_counts=True)
            loss = -(token_logp / counts[which]).sum() / max(len(counts), 1)
        else:
            loss = -token_logp.sum() / max(n, 1)
        return LossOutput(loss, n, row_logprob)

    def _frozen_head(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, audio_mask: torch.Tensor,
                     labels: torch.Tensor) -> int:
        """Length of the text every row opens with before its first audio (0: none, or the LLM trains)."""
        if any(p.requires_grad for p in self.llm.parameters()):
            return 0
        plain = ~audio_mask.any(0) & (labels == P.IGNORE).all(0) & attention_mask.bool().all(0) \
            & (input_ids == input_ids[:1]).all(0)
        head = int(plain.long().cumprod(0).sum())
        return head if 0 < head < input_ids.shape[1] else 0

    @torch.no_grad()
    def _head_cache(self, ids: torch.Tensor, rows: int):
        """A KV cache holding the frozen LLM's state after `ids` for `rows` rows (computed once per head)."""
        from transformers import DynamicCache

        key = (str(ids.device), *ids.tolist())
        if key not in self._heads:
            out = self.llm.get_decoder()(input_ids=ids[None], use_cache=True, cache=DynamicCache())
            self._heads[key] = [(k, v) for k, v, *_ in out.cache]
        return DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self._heads[key]])

    # ---- inference ----------------------------------------------------------------------------
    def _inputs(self, audios: Sequence[Sequence[Any]] | None, messages: Sequence[Sequence[dict]],
                data_root: str | Path | None) -> tuple[list[np.ndarray], list[str]]:
        """Flatten each row's clips (arrays, or references read from data_root) and their transcripts."""
        wavs: list[np.ndarray] = []
        texts: list[str | None] = []
        for i, msgs in enumerate(messages):
            entries = P.row_audios(msgs)
            given = audios[i] if audios is not None else [e["audio"] for e in entries]
            if len(given) != len(entries):
                raise ValueError(f"row {i}: {len(given)} audios for {len(entries)} {P.AUDIO} markers")
            for clip, entry in zip(given, entries):
                if isinstance(clip, (str, Path)):
                    clip = read_audio_ref(Path(data_root or "."), str(clip))[0]
                wavs.append(np.asarray(clip, dtype=np.float32))
                texts.append(entry.get("text"))
        keys = [audio_key(w) for w in wavs]
        todo = {keys[i]: i for i, t in enumerate(texts) if t is None}  # each distinct clip once
        heard = dict(zip(todo, self.transcribe([wavs[i] for i in todo.values()]))) if todo else {}
        return wavs, [heard.get(k, "") if t is None else t for k, t in zip(keys, texts)]

    def _batches(self, audios: Sequence[Sequence[Any]] | None, messages: Sequence[Sequence[dict]],
                 data_root: str | Path | None, batch_size: int, responses: Sequence[str] | None = None):
        """Per batch of rows: (collated tensors on the model's device, tapped encoder states, real frames)."""
        for b in range(0, len(messages), batch_size):
            msgs = messages[b : b + batch_size]
            wavs, texts = self._inputs(None if audios is None else audios[b : b + batch_size], msgs, data_root)
            at = np.cumsum([0] + [len(P.row_audios(m)) for m in msgs])
            enc = P.encode_many(self.tokenizer, [(m, texts[at[j] : at[j + 1]], None if responses is None else responses[b + j])
                                                 for j, m in enumerate(msgs)],
                                self.spec.model.prompt_size, max_transcript_tokens=self.spec.model.max_transcript_tokens)
            batch = P.collate(enc, self.tokenizer.pad_token_id, left=responses is None)
            keys = [audio_key(w) for w in wavs]
            distinct = list(dict.fromkeys(keys))  # the same clip asked several times is encoded once
            states = self.encode([wavs[keys.index(k)] for k in distinct])[[distinct.index(k) for k in keys]]
            yield {k: v.to(self.device) for k, v in batch.items()}, states.to(self.device), valid_frames(wavs)

    @torch.inference_mode()
    def generate(self, audios: Sequence[Sequence[Any]] | None, messages: Sequence[Sequence[dict]], *,
                 max_new_tokens: int = 128, do_sample: bool = False, temperature: float = 1.0,
                 top_p: float = 1.0, batch_size: int = 16, data_root: str | Path | None = None) -> list[str]:
        """Answer each row: `messages[i]` (system + user turns with `<|AUDIO|>` markers) about the clips
        `audios[i]` (16 kHz float arrays or references; None = the references in the messages).
        A clip's transcript comes from its message's `text`, else from Whisper's decoder."""
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
        out: list[str] = []
        for batch, states, frames in self._batches(audios, messages, data_root, batch_size):
            embeds = self.embed(batch["input_ids"], batch["audio_mask"], states, frames)
            with self.autocast():
                ids = self.llm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                        max_new_tokens=max_new_tokens, eos_token_id=self.eos_ids(),
                                        pad_token_id=self.tokenizer.pad_token_id, **sampling)
            out += [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out

    @torch.inference_mode()
    def response_logprobs(self, audios: Sequence[Sequence[Any]] | None, messages: Sequence[Sequence[dict]],
                          responses: Sequence[str], batch_size: int = 16,
                          data_root: str | Path | None = None) -> list[float]:
        """Summed log-probability of each response given its audio + messages (forced-choice scoring)."""
        out: list[float] = []
        for batch, states, frames in self._batches(audios, messages, data_root, batch_size, responses):
            out += self(audio_states=states, audio_frames=frames, **batch).row_logprob.tolist()
        return out

    def eos_ids(self) -> list[int]:
        """The ids that end an answer: the tokenizer's and the generation config's."""
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.llm, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None)
        ids |= set(extra if isinstance(extra, list) else [extra] if extra is not None else [])
        return sorted(i for i in ids if i is not None)

    # ---- persistence --------------------------------------------------------------------------
    def _stat_buffers(self) -> dict[str, torch.Tensor]:
        """The connector's input statistics: not trained, but part of the saved model."""
        return {n: b for n, b in self.named_buffers() if n.startswith("connector.state_")}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What `save_pretrained` writes: the trainable weights and the connector's input statistics."""
        state = {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}
        return state | {n: b.detach().cpu().float().contiguous() for n, b in self._stat_buffers().items()}

    def frozen_digest(self) -> str:
        """sha256 over every frozen weight (Whisper too when detached): equal before and after training."""
        h = hashlib.sha256()
        named = list(self.named_parameters())
        if "whisper" not in self._modules:
            named += list(self.whisper.named_parameters(prefix="whisper"))
        for name, p in sorted(named, key=lambda x: x[0]):
            if not p.requires_grad:
                h.update(name.encode())
                h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def save_pretrained(self, out_dir: str | Path, state: dict[str, torch.Tensor] | None = None,
                        extra: dict[str, Any] | None = None) -> Path:
        """Write the trainable weights (model.safetensors) + config.json naming the backbones."""
        state = state if state is not None else self.trainable_state_dict()
        config = {
            **self.spec.to_dict(), "precision": self.precision,
            "backbone_sha256": {"whisper": backbone_digest(self.spec.whisper), "llm": backbone_digest(self.spec.llm)},
            "trainable_parameters": int(sum(t.numel() for t in state.values())),
            **(extra or {}),
        }
        return write_export(out_dir, state, config)

    @classmethod
    def from_pretrained(cls, path: str | Path, whisper: str | None = None, llm: str | None = None,
                        precision: str | None = None, with_decoder: bool = True) -> DestaModel:
        """Rebuild from the named backbones (or overrides) and load the trainable weights.

        Also reads the official DeSTA2.5-Audio layout (config `model_type: desta25`)."""
        export = read_export(path, whisper, llm)
        model = cls.from_backbones(export.spec, precision or export.precision or "bf16", with_decoder)
        model.load_trainable(export.state, source=export.source)
        return model

    def load_trainable(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load exactly the trainable weights (+ input statistics); a missing or unexpected key is an error naming it."""
        buffers = self._stat_buffers()
        expected = {n for n, p in self.named_parameters() if p.requires_grad} | set(buffers)
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"{source}: trainable weights do not match the model "
                             f"(missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''})")
        params = dict(self.named_parameters()) | buffers
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise ValueError(f"{source}: {name} has shape {tuple(value.shape)}, model wants {tuple(params[name].shape)}")
                params[name].copy_(value.to(params[name].dtype))
