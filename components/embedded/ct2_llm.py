"""A causal LM in CTranslate2's format, converted once from its HF directory into the user cache.

The converted model is a pure function of the HF weights and the ctranslate2 version, so the cache
key is both: `$DESTA_CACHE/models/ct2/<name>-<weights digest>-ct2-<version>`. Weights are stored in
float32; CTranslate2 quantises at load time when a lower compute type (int8) is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock

from components.atomic import atomic_dir, atomic_write_text
from components.modeldir import user_cache, weights_digest

READY = "desta-ct2.json"  # written last: its presence marks a complete conversion


def ct2_dir(hf_dir: Path) -> Path:
    """Where the CTranslate2 copy of `hf_dir` lives (converted or not)."""
    import ctranslate2

    digest = weights_digest(hf_dir).removeprefix("sha256:")
    return user_cache("models", "ct2", f"{hf_dir.resolve().name}-{digest[:12]}-ct2-{ctranslate2.__version__}")


def convert_ct2_llm(hf_dir: Path) -> Path:
    """The CTranslate2 copy of the HF causal LM in `hf_dir`, converting it on first use (idempotent)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    out = ct2_dir(hf_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # two processes at once convert only once
        if not (out / READY).is_file():
            with atomic_dir(out) as tmp:
                TransformersConverter(str(hf_dir)).convert(str(tmp), force=True)
                atomic_write_text(tmp / READY, json.dumps({
                    "source": str(hf_dir.resolve()), "source_digest": weights_digest(hf_dir),
                    "ctranslate2": ctranslate2.__version__, "weights": "float32"}, indent=2) + "\n")
    return out
