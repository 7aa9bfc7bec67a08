"""Make torchaudio importable on CPU torch.

The PyPI torchaudio wheel is CUDA-linked: its shared objects fail to load against CPU torch and
`import torchaudio` raises. Without them torchaudio imports as pure Python (functional and
transforms work), so on a CPU-only torch we move them aside. Idempotent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main() -> int:
    import torch

    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        print("fix_torchaudio: torchaudio not installed", file=sys.stderr)
        return 1
    lib = Path(spec.origin).parent / "lib"
    if torch.version.cuda is None:
        for so in lib.glob("*.so"):
            so.rename(so.with_suffix(".so.cuda-disabled"))
            print(f"fix_torchaudio: disabled CUDA-linked {so.name}")
    import torchaudio.functional  # noqa: F401  -- fails loudly if still broken

    return 0


if __name__ == "__main__":
    sys.exit(main())
