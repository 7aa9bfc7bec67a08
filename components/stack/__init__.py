"""The local stack: S3 (moto, in memory), MLflow tracking server and Prefect server + process worker.

All on 127.0.0.1, each its own process, tracked by pid in `<data dir>/stack.json`. moto keeps buckets
and objects in memory only: they are lost whenever the stack stops. `desta stack up|down|status|env`.
"""

from components.stack.config import StackConfig
from components.stack.env import client_env, dvc_remote
from components.stack.manager import StackError, down, load, status, up

__all__ = ["StackConfig", "StackError", "client_env", "down", "dvc_remote", "load", "status", "up"]
