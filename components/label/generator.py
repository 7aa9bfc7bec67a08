"""Which model writes the targets, and a digest of its weights (part of every cache key)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from components.config import ModelsConfig
from components.modeldir import local_dir, weights_digest


class GeneratorMismatchWarning(UserWarning):
    """The generator is not the backbone LLM: the targets are no longer self-generated."""


class GeneratorDigestWarning(UserWarning):
    """No local copy of the generator: cache keys and provenance carry its name only."""


@dataclass(frozen=True)
class Generator:
    name: str  # as given in params (a local dir or a hub id / served model name)
    digest: str  # "sha256:<hex>" of the files, or "unresolved:<name>" when no local copy exists
    backbone: str
    self_generated: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def resolve_generator(models: ModelsConfig) -> Generator:
    """The generator (default: the backbone LLM) with its digest; warns when it is another model."""
    name = models.generator or models.llm
    same = models.generator is None or models.generator == models.llm
    path = local_dir(name)
    digest = weights_digest(path) if path else f"unresolved:{name}"
    if path and not same and (llm_path := local_dir(models.llm)):
        same = weights_digest(llm_path) == digest  # the same weights under another path still count
    if not same:
        warnings.warn(
            f"generator {name!r} is not the backbone LLM {models.llm!r}: targets will not be self-generated "
            "(the paper's no-forgetting property); recorded in provenance",
            GeneratorMismatchWarning, stacklevel=2,
        )
    if path is None:
        warnings.warn(f"no local copy of generator {name!r}: cache keys use its name, not a weights digest",
                      GeneratorDigestWarning, stacklevel=2)
    return Generator(name=name, digest=digest, backbone=models.llm, self_generated=same)
