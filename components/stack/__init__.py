"""The local stack: S3 (SeaweedFS), MLflow tracking server and Prefect server + process worker.

All on 127.0.0.1, each its own process, tracked by pid in `<data dir>/stack.json`. Everything stored
(S3 objects, MLflow runs and registry, Prefect state) lives in the data dir and survives restarts; the
S3 server accepts only the stack's own generated keys. `desta stack up|down|status|env`.
"""

from components.stack.config import StackConfig
from components.stack.env import client_env, dvc_remote
from components.stack.manager import StackError, down, load, status, up

__all__ = ["StackConfig", "StackError", "client_env", "down", "dvc_remote", "load", "status", "up"]
