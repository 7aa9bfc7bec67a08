"""`desta config`: validate params.yaml and print the active profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from components.console import ParamsOpt, fail


def config_command(params: Optional[Path] = ParamsOpt) -> None:  # noqa: UP045
    """Validate params.yaml and print the active profile as JSON."""
    from components.config import ConfigError, load_params

    try:
        p = load_params(params)
    except ConfigError as err:
        fail(str(err))
    print(json.dumps({"profile": p.profile, **p.active.model_dump(mode="json")}, indent=2))
