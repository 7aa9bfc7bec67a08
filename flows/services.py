"""Health checks of the services a flow depends on, run before any stage work starts.

A dead service should stop a run at once with a message naming it, not after an hour of training
(MLflow) or as a botocore traceback from inside `dvc push` (S3).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from components.stack.health import http_ok
from components.tracking import TrackingUnavailable, require_server


class ServiceUnavailable(RuntimeError):
    """A service the flow needs does not answer; the message names it, its URL and what to do."""


def _reachable(url: str, timeout: float) -> bool:
    """Something answers HTTP at `url` (any status: S3 answers 403/404 to an anonymous GET)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_mlflow(timeout: float = 5.0) -> str:
    """The tracking URI, after checking that a tracking *server* answers /health (local stores need no check)."""
    try:
        return require_server(timeout)
    except TrackingUnavailable as err:
        raise ServiceUnavailable(f"{err}; no stage was started") from None


def check_s3(endpoint: str, what: str, timeout: float = 5.0) -> None:
    """Raise ServiceUnavailable naming `what` (e.g. the DVC remote) when nothing answers at `endpoint`."""
    if not _reachable(endpoint, timeout):
        raise ServiceUnavailable(f"S3 endpoint {endpoint} ({what}) is unreachable: connection failed.")


def check_prefect(api_url: str, timeout: float = 3.0) -> None:
    """PREFECT_API_URL must answer /health, or every flow call would hang on retries."""
    if not http_ok(f"{api_url.rstrip('/')}/health", timeout):
        host = urlsplit(api_url).netloc
        raise ServiceUnavailable(
            f"Prefect server at {api_url} is unreachable ({host}): start it (`desta stack up`) "
            "or unset PREFECT_API_URL to let the flow start a temporary server."
        )
