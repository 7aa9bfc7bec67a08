"""The trained model as an MLflow model: logged as a pyfunc (from code, nothing pickled), registered, loaded
back as `models:/<name>@champion` with MLflow's own API from another directory, and served by a real
`mlflow models serve` process on loopback answering a request about a real clip, with the same answers
as the model itself."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

from components.model import DestaModel
from components.stack import procs
from components.model.serving import find_backbone, log_pyfunc
from tests.components.model.realdata import build_corpus
from tests.components.model.test_model import tiny  # noqa: F401 -- the shared untrained tiny model
from tests.flows.servers import on_free_port
from tests.conftest import VENV_BIN

pytestmark = pytest.mark.integration
NAME = "serving-test"
ASK = ["What is the gender of the speaker?", "Describe the audio."]


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, tiny: DestaModel) -> dict[str, Any]:  # noqa: F811
    import mlflow
    from mlflow.tracking import MlflowClient

    base = tmp_path_factory.mktemp("serving")
    root = base / "data"
    rows = build_corpus(root, n_speech=2, sounds=("bell",))
    refs = [rows[0]["messages"][1]["audios"][0]["audio"], rows[-1]["messages"][1]["audios"][0]["audio"]]
    with torch.no_grad():  # not the identity init: a connector whose answers depend on its weights
        tiny.connector.proj[1].bias.add_(0.01)
    try:
        export = tiny.save_pretrained(base / "train" / "model")
    finally:
        with torch.no_grad():
            tiny.connector.proj[1].bias.sub_(0.01)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("serving", artifact_location=(base / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        info = log_pyfunc(export)
    client = MlflowClient(uri)
    client.create_registered_model(NAME)
    version = client.create_model_version(NAME, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
    client.set_registered_model_alias(NAME, "champion", version.version)
    mlflow.set_tracking_uri(None)
    expected = DestaModel.from_pretrained(export).generate(
        [[r] for r in refs], [[{"role": "system", "content": "Focus on the audio clips and instruction."},
                               {"role": "user", "content": f"<|AUDIO|>\n{q}", "audios": [{"audio": r}]}]
                              for r, q in zip(refs, ASK)], max_new_tokens=16, data_root=root)
    return {"uri": uri, "root": root, "refs": refs, "expected": expected, "base": base, "source": version.source}


def _frame(champion: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame({"audio": champion["refs"], "instruction": ASK})


def test_champion_loads_with_mlflow_api(champion: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)  # elsewhere: the backbones are found in the repo by digest
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion["uri"])
    assert champion["source"].startswith("models:/m-")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion", model_config={"data_root": str(champion["root"])})
    assert [c.name for c in model.metadata.signature.inputs] == ["audio", "instruction"]
    got = model.predict(_frame(champion), params={"max_new_tokens": 16})
    assert list(got) == champion["expected"] and all(isinstance(a, str) and a for a in got)
    # a plain audio file works as well as a clip reference: the same clip written out as FLAC
    import soundfile as sf

    from components.audio import read_audio_ref

    wav, sr = read_audio_ref(champion["root"], champion["refs"][0])
    sf.write(tmp_path / "clip.flac", wav, sr)
    import pandas as pd

    one = model.predict(pd.DataFrame({"audio": [str(tmp_path / "clip.flac")], "instruction": [ASK[0]]}),
                        params={"max_new_tokens": 16})
    assert list(one) == champion["expected"][:1]
    (tmp_path / "notes.txt").write_text("not audio")
    for bad in (str(tmp_path / "notes.txt"), "../../etc/passwd", "ingest/shards/none.tar/x.flac"):
        with pytest.raises(ValueError, match="neither an audio file nor a clip reference"):
            model.predict(pd.DataFrame({"audio": [bad], "instruction": [ASK[0]]}))
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path / "dl")))
    assert not list(model_dir.rglob("*.pkl")) and (model_dir / "mlflow_entry.py").is_file()  # from code, no pickle


def test_mlflow_models_serve_answers_a_real_clip(champion: dict[str, Any], tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion["uri"], "DO_NOT_TRACK": "1", "DESTA_DATA_ROOT": str(champion["root"]),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # it execs the venv's uvicorn
    log = tmp_path / "serve.log"

    def start(port: int) -> subprocess.Popen:
        return procs.spawn([str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
                            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env, log, tmp_path)

    with on_free_port(start, lambda port: f"http://127.0.0.1:{port}/ping", log, timeout=240, grace=30) as (port, _):
        body = {"dataframe_split": {"columns": ["audio", "instruction"],
                                    "data": [[r, q] for r, q in zip(champion["refs"], ASK)]},
                "params": {"max_new_tokens": 16}}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            answers = json.loads(resp.read())["predictions"]
        assert answers == champion["expected"]


def test_a_missing_backbone_names_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTA_BACKBONES_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"sha256 0{64} not found: tried .*models/whisper-tiny\.en \(missing\)"):
        find_backbone("models/whisper-tiny.en", "0" * 64)
    assert find_backbone("models/whisper-tiny.en", None).endswith("models/whisper-tiny.en")
