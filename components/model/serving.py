"""The trained model as an MLflow model: a pyfunc that answers an instruction about an audio clip.

`mlflow.pyfunc.load_model("models:/<registered model>@champion")` and `mlflow models serve -m …
--env-manager local` (in this repository's venv) take a frame with string columns `audio` (a file path,
or a clip reference `ingest/shards/<shard>.tar/<id>.flac` under the data root, as in the seed rows) and
`instruction`, and return one answer per row. The MLflow model holds only the trainable weights and their
config (`data/train/model`); the frozen backbones are named there by path and sha256 and found at load
time under $DESTA_BACKBONES_DIR, the current directory or this repository (`make setup` links them
under models/), whichever holds the same digest. Clip references resolve under `data_root` (given at load:
`load_model(uri, model_config={"data_root": …})`), else $DESTA_DATA_ROOT, else ./data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from components.model.backbones import CONFIG_FILE
from components.modeldir import backbone_digest
from components.vocab import SYSTEM

ARTIFACT = "weights"  # the artifact key of data/train/model inside the MLflow model
REPO = Path(__file__).resolve().parents[2]


def find_backbone(name: str, digest: str | None) -> str:
    """A local directory holding backbone `name` with sha256 `digest`; an error names where it looked."""
    tried = []
    bases = [Path(os.environ["DESTA_BACKBONES_DIR"])] if os.environ.get("DESTA_BACKBONES_DIR") else []
    for base in [*bases, Path.cwd(), REPO]:
        cand = Path(name) if Path(name).is_absolute() else base / name
        if cand.is_dir():
            if digest is None or backbone_digest(str(cand)) == digest:
                return str(cand)
            tried.append(f"{cand} (other digest)")
        else:
            tried.append(f"{cand} (missing)")
    raise FileNotFoundError(f"backbone {name} with sha256 {digest} not found: tried {', '.join(tried)}; "
                            "set DESTA_BACKBONES_DIR to the folder holding it (`make setup` prepares models/)")


class DestaPyfunc(mlflow.pyfunc.PythonModel):
    """Answers `instruction` about `audio`, row by row, greedy."""

    def load_context(self, context: Any) -> None:
        from components.model.desta import DestaModel

        weights = Path(context.artifacts[ARTIFACT])
        config = json.loads((weights / CONFIG_FILE).read_text())
        digests = config.get("backbone_sha256") or {}
        self.model = DestaModel.from_pretrained(weights, whisper=find_backbone(config["whisper"], digests.get("whisper")),
                                                llm=find_backbone(config["llm"], digests.get("llm")))
        mc = context.model_config or {}
        self.data_root = Path(mc.get("data_root") or os.environ.get("DESTA_DATA_ROOT") or "data")
        self.max_new_tokens = int(mc.get("max_new_tokens", 128))

    def _clip(self, audio: str) -> Any:
        from components.audio import load_audio, read_audio_ref

        path = Path(audio).expanduser()
        try:
            if path.is_file():
                return load_audio(path, 16000).numpy()
            return read_audio_ref(self.data_root, audio)[0]  # the data root is the boundary for references
        except (ValueError, OSError, KeyError, RuntimeError) as err:  # soundfile's errors are RuntimeErrors
            raise ValueError(f"audio {audio!r} is neither an audio file nor a clip reference under {self.data_root} ({err})") from None

    def predict(self, context, model_input, params=None):  # untyped: MLflow reads type hints as a signature
        """One greedy answer per row of a frame with columns audio and instruction."""
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        missing = [c for c in ("audio", "instruction") if rows and c not in rows[0]]
        if missing:
            raise ValueError(f"input needs columns audio and instruction (missing {missing})")
        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        clips = [[self._clip(str(r["audio"]))] for r in rows]
        messages = [[{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": f"<|AUDIO|>\n{r['instruction']}", "audios": [{"audio": "clip"}]}]
                    for r in rows]
        return self.model.generate(clips, messages, max_new_tokens=max_new, batch_size=8)


def log_pyfunc(model_dir: Path, name: str = "model") -> Any:
    """Log `model_dir` (a `desta train` export) as an MLflow pyfunc model in the active run; its ModelInfo."""
    import warnings

    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"audio": ["ingest/shards/shard-00000.tar/clip.flac"], "instruction": ["Describe the voice."]})
    signature = infer_signature(example, ["A calm female voice."], params={"max_new_tokens": 128})
    with warnings.catch_warnings():  # "add type hints" / "no input example": the signature is explicit
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.log_model(  # models from code (mlflow_entry.py): no pickled object in the model
            name=name, python_model=str(Path(__file__).with_name("mlflow_entry.py")), artifacts={ARTIFACT: str(model_dir)},
            signature=signature, model_config={"max_new_tokens": 128, "data_root": ""},  # "": $DESTA_DATA_ROOT or ./data
            pip_requirements=_requirements())


def _requirements() -> list[str]:
    """The serving process's packages, pinned as installed (the `components` package itself is this repo)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "transformers", "safetensors", "numpy", "soundfile", "torchaudio",
                                             "pandas", "mlflow")]
