"""The promotion gate: pure decisions, then aliases on a real MLflow registry (sqlite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.evaluate.gate import CANDIDATE, CHAMPION, apply_gate, decide


def test_decisions() -> None:
    assert decide({"acc": 50}, None, "acc", 1.0, 0.2).promote
    assert decide({"acc": 52}, {"acc": 50}, "acc", 1.0, 0.2).promote
    held = decide({"acc": 50.5}, {"acc": 50}, "acc", 1.0, 0.2)
    assert not held.promote and "gain 0.50 <= 1.0" in held.reason
    forgot = decide({"acc": 90, "forgetting_rate": -0.5}, {"acc": 50}, "acc", 1.0, 0.2)
    assert not forgot.promote and "forgetting" in forgot.reason
    assert not decide({}, None, "acc", 0, 0.2).promote


def test_aliases_on_a_real_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from components import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.chdir(tmp_path)
    versions = []
    for _ in range(3):
        with tracking.stage_run("train", "gate") as run:
            (tmp_path / "w.txt").write_text("weights")
            run.log_artifact(tmp_path / "w.txt", "model")
            versions.append(run.register_model("model", "gate-model"))
    client = MlflowClient(tracking.tracking_uri())
    assert apply_gate("gate-model", versions[0], {"acc": 40.0}, "acc", 1.0, 0.2).promote
    assert not apply_gate("gate-model", versions[1], {"acc": 40.5}, "acc", 1.0, 0.2).promote
    assert str(client.get_model_version_by_alias("gate-model", CHAMPION).version) == versions[0]
    assert str(client.get_model_version_by_alias("gate-model", CANDIDATE).version) == versions[1]
    assert apply_gate("gate-model", versions[2], {"acc": 45.0}, "acc", 1.0, 0.2).promote
    assert str(client.get_model_version_by_alias("gate-model", CHAMPION).version) == versions[2]
    assert client.get_model_version("gate-model", versions[1]).tags["desta.gate"].startswith("held:")
