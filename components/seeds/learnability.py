"""Learnability: how well the features the model hears tell each seed attribute's words apart on held-out
voices (and held-out instruments, for music). A linear probe (logistic regression) on the tapped Whisper states the connector reads, pooled per
clip (mean and spread over the clip's own frames of each tapped layer), fitted on train-split clips and
scored on test-split clips (no speaker or transcript shared). Its accuracy is a ceiling estimate for what
training can teach: an attribute whose probe stays near its majority word cannot be heard from these
features, whatever the labels say. The states go through the encoder cache when training uses one, so
training reads them back instead of encoding those clips again.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.model.encoder import AudioStates
from components.vocab import MUSIC_FIELDS, SPEECH_FIELDS

ATTRIBUTES = SPEECH_FIELDS + MUSIC_FIELDS
KINDS = ("speech", "music")  # the kinds of clip probed, each up to `clips`
TEST_SHARE = 3  # at most a third of the probe's clips are held out; the rest fit it


def _order(row: dict[str, Any]) -> bytes:
    return hashlib.sha256(row["id"].encode()).digest()


class ClipPicker:
    """Up to `clips` speech rows (and as many music rows) in content-hash order (a stable spread over the
    corpus), at most a third from the test split and the rest from train, picked as the seed rows stream
    past (`add`): no second read of the shards, and only ~2x the picked rows are held."""

    def __init__(self, clips: int) -> None:
        self.clips = clips
        self.pools: dict[tuple[str, bool], list[tuple[bytes, dict[str, Any]]]] = {}  # (kind, test?) -> rows

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """Consider one seed row; returns it (so a writer's stream can pass through)."""
        if self.clips and row["kind"] in KINDS:
            pool = self.pools.setdefault((row["kind"], row["split"] == "test"), [])
            pool.append((_order(row), row))
            if len(pool) > 2 * self.clips:
                pool[:] = heapq.nsmallest(self.clips, pool, key=lambda p: p[0])
        return row

    def picked(self) -> list[dict[str, Any]]:
        out = []
        for kind in KINDS:
            test = heapq.nsmallest(self.clips // TEST_SHARE, self.pools.get((kind, True), []), key=lambda p: p[0])
            train = heapq.nsmallest(self.clips - len(test), self.pools.get((kind, False), []), key=lambda p: p[0])
            out += [r for _, r in train + test]
        return out


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


def learnability(picked: Sequence[dict[str, Any]], states: AudioStates, layers: Sequence[int],
                 advance: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """The report's `learnability` section over the `picked` clips (`states` reads or encodes them).
    Only what the inputs decide goes in (no times or cache hits): a re-run writes the same bytes."""
    feats = []
    for i in range(0, len(picked), 8):
        batch = picked[i : i + 8]
        feats.append(pooled(*states([r["audio"] for r in batch])))
        advance(len(batch))
    return {
        "features": f"Whisper encoder layers {list(layers)}: mean and std over each clip's frames",
        "clips": {"train": sum(r["split"] != "test" for r in picked), "test": sum(r["split"] == "test" for r in picked)},
        "attributes": fit_probes(np.concatenate(feats), list(picked)) if feats else {},
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
        from components.model.encoder import cache_root
        from components.precision import resolve

        if not prof.seeds.probe_clips:
            return None
        root = cache_root(prof.train)
        return cls(prof.seeds.probe_clips, str(prof.models.whisper), tuple(prof.model.encoder_layers),
                   resolve(prof.train.precision, "cpu"), str(root) if root else None)

    def states(self, data_root: Path) -> AudioStates:
        """The encoder at the model's taps, through training's encoder cache when it has one (same encoder
        digest, taps and dtype: the same key, so training reads these states back)."""
        from components.model.encoder import EncoderCache, TappedEncoder
        from components.modeldir import backbone_digest

        encoder = TappedEncoder(self.whisper, self.layers, self.precision)
        cache = (EncoderCache(Path(self.cache_root), backbone_digest(self.whisper), self.layers, encoder.states_dtype)
                 if self.cache_root else None)
        return AudioStates(encoder, data_root, cache)
