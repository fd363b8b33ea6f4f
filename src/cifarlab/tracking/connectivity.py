"""Check the MLflow tracking store before a stage computes: fail in seconds, naming the URI.

Plain HTTP with a short timeout and no retries, so an unreachable or refusing server is a clear
error at once instead of minutes of the MLflow client's retries.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from cifarlab.errors import TrackingError

CHECK_TIMEOUT_S = 5.0


def _request(url: str, timeout: float) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": "cifarlab"})
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user is not None:
        secret = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def check_tracking_uri(uri: str, *, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise TrackingError unless the store at ``uri`` answers and accepts this client."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        base = uri.rstrip("/")
        try:
            _request(f"{base}/health", timeout)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it "
                f"(make server) or point MLFLOW_TRACKING_URI elsewhere"
            ) from None
        status = _request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", timeout)
        if status in (401, 403):
            raise TrackingError(
                f"MLflow tracking server {uri} refused this client (HTTP {status}): set "
                f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a valid account"
            )
        if status >= 400:
            raise TrackingError(f"MLflow tracking server {uri} answered HTTP {status}")
    elif parsed.scheme == "sqlite":
        folder = Path(parsed.path).parent if parsed.path else Path.cwd()
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: folder {folder} is missing or not writable")
