"""Learnability: how well the features the model hears tell each seed attribute's words apart on held-out
voices. A linear probe (logistic regression) on the tapped Whisper states the connector reads, pooled per
clip (mean and spread over the clip's own frames of each tapped layer), fitted on train-split clips and
scored on test-split clips (no speaker or transcript shared). Its accuracy is a ceiling estimate for what
training can teach: an attribute whose probe stays near its majority word cannot be heard from these
features, whatever the labels say. The states go through the encoder cache when training uses one, so
training reads them back instead of encoding those clips again.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.model.encoder import AudioStates

ATTRIBUTES = ("Gender", "Pitch", "Volume", "Speaking speed", "Emotion")
TEST_SHARE = 3  # at most a third of the probe's clips are held out; the rest fit it


def _order(row: dict[str, Any]) -> bytes:
    return hashlib.sha256(row["id"].encode()).digest()


def pick_clips(rows: Callable[[], Iterable[dict[str, Any]]], clips: int) -> list[dict[str, Any]]:
    """Up to `clips` speech rows in content-hash order (a stable spread over the corpus): at most a third
    from the test split, the rest from train. Two streaming passes over `rows()`; only the picked are held."""
    test = heapq.nsmallest(clips // TEST_SHARE, (r for r in rows() if r["kind"] == "speech" and r["split"] == "test"),
                           key=_order)
    train = heapq.nsmallest(clips - len(test), (r for r in rows() if r["kind"] == "speech" and r["split"] != "test"),
                            key=_order)
    return train + test


def pooled(states: torch.Tensor, frames: torch.Tensor) -> np.ndarray:
    """(N, L, T, d) states + real positions per clip -> (N, 2 L d): each layer's mean and std over the clip."""
    out = []
    for s, n in zip(states.float(), frames.tolist()):
        real = s[:, :n]
        out.append(torch.cat([real.mean(1).flatten(), real.std(1, unbiased=False).flatten()]))
    return torch.stack(out).numpy()


def fit_probes(x: np.ndarray, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per attribute: the probe's held-out accuracy beside the majority word's and chance (1 / words)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test = np.array([r["split"] == "test" for r in rows])
    out = {}
    for name in ATTRIBUTES:
        y = np.array([(r["attributes"].get(name) or {}).get("value", "") for r in rows])
        tr, te = ~test & (y != ""), test & (y != "")
        words, counts = np.unique(y[tr], return_counts=True)
        if len(words) < 2 or not te.any():
            continue
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x[tr], y[tr])
        out[name] = {
            "probe": round(float((probe.predict(x[te]) == y[te]).mean()), 4),
            "majority": round(float((y[te] == words[counts.argmax()]).mean()), 4),
            "chance": round(1 / len(set(y[tr]) | set(y[te])), 4),
            "n_train": int(tr.sum()), "n_test": int(te.sum()),
        }
    return out


def learnability(rows: Callable[[], Iterable[dict[str, Any]]], clips: int, states: AudioStates,
                 layers: Sequence[int], advance: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """The report's `learnability` section over up to `clips` speech clips (`states` reads or encodes them).
    Only what the inputs decide goes in (no times or cache hits): a re-run writes the same bytes."""
    picked = pick_clips(rows, clips)
    feats = []
    for i in range(0, len(picked), 8):
        batch = picked[i : i + 8]
        feats.append(pooled(*states([r["audio"] for r in batch])))
        advance(len(batch))
    return {
        "features": f"Whisper encoder layers {list(layers)}: mean and std over each clip's frames",
        "clips": {"train": sum(r["split"] != "test" for r in picked), "test": sum(r["split"] == "test" for r in picked)},
        "attributes": fit_probes(np.concatenate(feats), picked) if feats else {},
    }


@dataclass(frozen=True)
class ProbeSpec:
    """What the probe needs from a profile: clips, the model's encoder and taps, the precision training
    runs in (so the states and the cache key are training's), and the cache root when training uses one."""

    clips: int
    whisper: str
    layers: tuple[int, ...]
    precision: str
    cache_root: str | None

    @classmethod
    def from_profile(cls, prof: Any) -> ProbeSpec | None:
        """None when `seeds.probe_clips` is 0 (no probe)."""
        from components.model.encoder import default_cache_root
        from components.precision import resolve

        if not prof.seeds.probe_clips:
            return None
        return cls(prof.seeds.probe_clips, str(prof.models.whisper), tuple(prof.model.encoder_layers),
                   resolve(prof.train.precision, "cpu"), str(default_cache_root()) if prof.train.encoder_cache else None)

    def states(self, data_root: Path) -> AudioStates:
        """The encoder at the model's taps, through training's encoder cache when it has one (same encoder
        digest, taps and dtype: the same key, so training reads these states back)."""
        from components.model.encoder import EncoderCache, TappedEncoder
        from components.modeldir import backbone_digest

        encoder = TappedEncoder(self.whisper, self.layers, self.precision)
        cache = (EncoderCache(Path(self.cache_root), backbone_digest(self.whisper), self.layers, encoder.states_dtype)
                 if self.cache_root else None)
        return AudioStates(encoder, data_root, cache)
