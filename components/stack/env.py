"""Environment for clients of a running stack (flows, DVC, MLflow, boto3) and for the services' children."""

from __future__ import annotations

import os
from collections.abc import Mapping

from components.stack.config import StackConfig

REGION = "us-east-1"
# moto accepts any credentials. These dummies go only into process environments (never into files) and
# only when the user has none, so real credentials already exported are passed through untouched.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "desta-local", "AWS_SECRET_ACCESS_KEY": "desta-local"}


def aws_defaults(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Credentials and region to add when `environ` (default os.environ) lacks them."""
    environ = os.environ if environ is None else environ
    out = {k: v for k, v in DUMMY_CREDENTIALS.items() if not environ.get(k)}
    if not (environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION")):
        out["AWS_DEFAULT_REGION"] = REGION
    return out


def client_env(cfg: StackConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a client of the stack should export (URLs, DVC remote, and AWS defaults it lacks)."""
    return {
        "MLFLOW_TRACKING_URI": cfg.mlflow_url,
        "MLFLOW_S3_ENDPOINT_URL": cfg.s3_url,  # for clients writing to s3:// artifact roots directly
        "AWS_ENDPOINT_URL": cfg.s3_url,  # botocore (and so DVC's s3fs) use it when no endpoint is configured
        "DESTA_DVC_REMOTE_URL": f"s3://{cfg.dvc_bucket}",
        "DESTA_S3_ENDPOINT_URL": cfg.s3_url,
        "PREFECT_API_URL": cfg.prefect_api_url,
        **aws_defaults(environ),
    }


def dvc_remote(cfg: StackConfig) -> dict[str, str]:
    """Settings for `dvc remote add -d <name> <url>` + `dvc remote modify <name> endpointurl <...>`."""
    return {"url": f"s3://{cfg.dvc_bucket}", "endpointurl": cfg.s3_url}
