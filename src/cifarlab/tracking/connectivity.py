"""Check the MLflow tracking store before a stage computes: fail in seconds, naming the URI.

Plain HTTP with a short timeout and no retries, so an unreachable or refusing server is a clear
error at once instead of minutes of the MLflow client's retries. A refusal names its cause: no
login, a wrong login, a user without the permission the stage needs, or a host name the server's
allowed hosts do not list.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote, urlparse, urlunparse

from cifarlab.errors import TrackingError

CHECK_TIMEOUT_S = 5.0
# A server that answered /health is up, but a fresh worker's first API call opens its stores
# (seconds, more on a busy machine): the API calls may take longer than the health check.
API_TIMEOUT_S = 30.0
# The most of an answer read: enough for an experiment's JSON.
_BODY_BYTES = 1 << 16
# MLflow's answer when its --allowed-hosts do not list the request's Host header.
INVALID_HOST = "Invalid Host header"


def redact(uri: str) -> str:
    """``uri`` with any password in it replaced by ``***``, fit for messages and logs."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = f"{parsed.username or ''}:***@{parsed.netloc.rpartition('@')[2]}"
    return urlunparse(parsed._replace(netloc=netloc))


def _split_login(uri: str) -> tuple[str, str | None, str | None]:
    """(``uri`` without user and password, the user, the password): the environment's
    ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` first, as MLflow's client, else the URI's."""
    parsed = urlparse(uri)
    base = urlunparse(parsed._replace(netloc=parsed.netloc.rpartition("@")[2])).rstrip("/")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user is not None:
        return base, user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if parsed.username is not None:
        return base, unquote(parsed.username), unquote(parsed.password or "")
    return base, None, None


def _request(
    url: str, timeout: float, login: tuple[str | None, str | None], body: dict | None = None
) -> tuple[int, str]:
    """(HTTP status, the answer's body) of a GET, or a POST of ``body``."""
    user, password = login
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"User-Agent": "cifarlab"})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user is not None:
        secret = f"{user}:{password or ''}"
        request.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(_BODY_BYTES).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(_BODY_BYTES).decode(errors="replace")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(reason).__name__


def refusal_message(uri: str, status: int, body: str, user: str | None, action: str) -> str:
    """One line naming why the server at ``uri`` answered ``status`` (4xx / 5xx) to ``user``
    asking to ``action`` (e.g. "create runs in experiment 'cifarlab'")."""
    shown = redact(uri)
    text = " ".join(body.split())
    with_detail = f"{text[:160]}…" if len(text) > 160 else text
    if status == 403 and INVALID_HOST in text:
        netloc = urlparse(uri).netloc.rpartition("@")[2]
        return (
            f"MLflow tracking server {shown} refused the host name {netloc!r} (HTTP 403 "
            f"{INVALID_HOST}): the server accepts only the names in its --allowed-hosts; reach "
            f"it by one of them, or restart it with that name in CIFARLAB_SERVER_ALLOWED_HOSTS"
        )
    if status == 401 and user is None:
        return (
            f"MLflow tracking server {shown} refused this client (HTTP 401: it requires a "
            f"login): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a valid "
            f"account (an admin adds one: make server-add-user NAME=...)"
        )
    if status == 401:
        return (
            f"MLflow tracking server {shown} refused the login of user {user!r} (HTTP 401): "
            f"the password is wrong or the server has no such user (MLFLOW_TRACKING_USERNAME, "
            f"MLFLOW_TRACKING_PASSWORD)"
        )
    if status == 403:
        who = f"user {user!r}" if user is not None else "this client"
        return (
            f"MLflow tracking server {shown} refused {who} (HTTP 403 {with_detail or 'Forbidden'})"
            f": {who} has no permission to {action}; an admin grants it (the server's "
            f"CIFARLAB_SERVER_DEFAULT_PERMISSION=EDIT, or an EDIT permission on the experiment)"
        )
    return f"MLflow tracking server {shown} answered HTTP {status} ({with_detail}) to {action}"


def check_tracking_uri(
    uri: str,
    *,
    experiment: str | None = None,
    timeout: float = CHECK_TIMEOUT_S,
    api_timeout: float = API_TIMEOUT_S,
) -> None:
    """Raise TrackingError unless the store at ``uri`` answers (``/health`` within ``timeout``
    seconds, its API within ``api_timeout``) and accepts this client.

    experiment : also check that this client may create runs in this experiment, if it exists
        (one who may create the experiment owns it). Nothing is created: the request sent has
        an invalid start time, which the server rejects (HTTP 400) only once it has authorised
        the request; a client without the permission gets 403.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        base, user, password = _split_login(uri)
        login = (user, password)
        try:
            _request(f"{base}/health", timeout, login)
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(
                f"MLflow tracking server {redact(uri)} is unreachable ({_reason(exc)}); start "
                f"it (make server) or point MLFLOW_TRACKING_URI elsewhere"
            ) from None
        api = f"{base}/api/2.0/mlflow"
        try:
            status, body = _request(f"{api}/experiments/search?max_results=1", api_timeout, login)
            if status >= 400:
                raise TrackingError(refusal_message(uri, status, body, user, "read experiments"))
            if experiment:
                _check_can_create_runs(uri, api, experiment, api_timeout, login)
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(
                f"MLflow tracking server {redact(uri)} answers /health but not its API within "
                f"{api_timeout:g} s ({_reason(exc)}): see the server's log"
            ) from None
    elif parsed.scheme == "sqlite":
        folder = Path(parsed.path).parent if parsed.path else Path.cwd()
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: folder {folder} is missing or not writable")


def _check_can_create_runs(
    uri: str, api: str, experiment: str, timeout: float, login: tuple[str | None, str | None]
) -> None:
    user = login[0]
    name = quote(experiment, safe="")
    status, body = _request(f"{api}/experiments/get-by-name?experiment_name={name}", timeout, login)
    if status == 404:
        return  # the stage creates it, and its creator may write to it
    if status >= 400:
        raise TrackingError(
            refusal_message(uri, status, body, user, f"read experiment {experiment!r}")
        )
    try:
        experiment_id = json.loads(body)["experiment"]["experiment_id"]
    except (ValueError, KeyError, TypeError):
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} answered an experiment lookup with no "
            f"experiment in it: is it an MLflow server?"
        ) from None
    probe = {"experiment_id": experiment_id, "start_time": "not a time"}
    status, body = _request(f"{api}/runs/create", timeout, login, probe)
    if status == 400:
        return  # authorised, then refused as invalid: nothing was created
    if 200 <= status < 300:  # a server that took the invalid start time: remove its run
        run_id = None
        with contextlib.suppress(ValueError, AttributeError):
            run_id = json.loads(body).get("run", {}).get("info", {}).get("run_id")
        if run_id:
            _request(f"{api}/runs/delete", timeout, login, {"run_id": run_id})
        return
    action = f"create runs in experiment {experiment!r}"
    raise TrackingError(refusal_message(uri, status, body, user, action))
