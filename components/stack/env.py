"""Environment for clients of a running stack (flows, DVC, MLflow, boto3) and for the services' children."""

from __future__ import annotations

import os
from collections.abc import Mapping

from components.stack.config import StackConfig
from components.stack.objectstore import credentials

REGION = "us-east-1"
# A session token from the user's shell would be sent with the stack's keys (and refused): clients drop it.
FOREIGN = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def s3_env(cfg: StackConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The stack's S3 credentials (they replace any AWS keys in `environ`: the local S3 accepts only its own),
    plus a region when `environ` (default os.environ) names none. Process environments only, never files."""
    environ = os.environ if environ is None else environ
    out = credentials(cfg.data_dir)
    if not (environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION")):
        out["AWS_DEFAULT_REGION"] = REGION
    return out


def client_env(cfg: StackConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a client of the stack should export (URLs, DVC remote, the S3 credentials)."""
    return {
        "MLFLOW_TRACKING_URI": cfg.mlflow_url,
        "MLFLOW_S3_ENDPOINT_URL": cfg.s3_url,  # for clients writing to s3:// artifact roots directly
        "AWS_ENDPOINT_URL": cfg.s3_url,  # botocore (and so DVC's s3fs) use it when no endpoint is configured
        "DESTA_DVC_REMOTE_URL": f"s3://{cfg.dvc_bucket}",
        "DESTA_S3_ENDPOINT_URL": cfg.s3_url,
        "PREFECT_API_URL": cfg.prefect_api_url,
        **s3_env(cfg, environ),
    }


def dvc_remote(cfg: StackConfig) -> dict[str, str]:
    """Settings for `dvc remote add -d <name> <url>` + `dvc remote modify <name> endpointurl <...>`."""
    return {"url": f"s3://{cfg.dvc_bucket}", "endpointurl": cfg.s3_url}
