"""One HTTP session to SciCat: login, timeouts, rate limit, errors sorted by kind.

One request per call: the client does not retry. A transient failure (connection, timeout,
5xx, 429 with its ``Retry-After``) is raised as ``ScicatUnavailable`` and the step executor
retries the whole step with the one retry policy (``ingest/retry.py``). Steps are idempotent and
the POST steps check SciCat before writing, so a retried step is safe, and retries never
nest (a client loop inside a step loop multiplied the requests). The one repeat made here
is a new login when the session expired (401).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from .. import metrics
from ..config import ScicatOptions
from ..current import announce_write
from ..errors import ScicatAuthError, ScicatUnavailable
from .errors import TRANSIENT_STATUSES, error_for_response, server_message

if TYPE_CHECKING:
    from .learned import LearnedStore

__all__ = ["Limiter", "LocalRateLimiter", "ScicatClient"]


class Limiter(Protocol):
    """Waits until the next request may go (``scicat.rate_limit_per_s``)."""

    def wait(self) -> None: ...


class LocalRateLimiter:
    """At most ``rate`` calls per second from this process (0 = unlimited).

    The worker shares one budget through Redis instead (``queue/rate_limit.py``) and falls
    back to this one while Redis is away.
    """

    def __init__(self, rate: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            self._sleep(delay)


class ScicatClient:
    """Talks to one SciCat backend; safe to share between threads of one process."""

    def __init__(
        self,
        settings: ScicatOptions,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        limiter: Limiter | None = None,
        learned: LearnedStore | None = None,
    ) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.session.headers.update(settings.additional_headers)
        self.session.verify = settings.verify
        _freeze_environment(self.session, settings)
        self._limiter = limiter or LocalRateLimiter(settings.rate_limit_per_s, sleep)
        self._token = settings.token.get_secret_value()
        self._login_lock = threading.Lock()
        #: Whether SciCat takes our token as anonymous (None = not asked since the last login).
        self._anonymous: bool | None = None
        #: What the account may read, probed once (see ``scicat.rights``); steps cache it here.
        self.rights: Any = None
        #: Where a command's process keeps what it learnt for the next one (``scicat/learned.py``).
        self.learned = learned

    # -- plumbing -------------------------------------------------------------------------

    def url(self, path: str, *, base: str | None = None) -> str:
        """``path`` under ``base`` (the API root by default); ``base=""`` takes ``path`` whole."""
        if base == "":
            return path
        return f"{(base or self.settings.api_base).rstrip('/')}/{path.lstrip('/')}"

    @staticmethod
    def quote_pid(pid: str) -> str:
        """A pid is one path segment: its ``/`` must travel as ``%2F``."""
        return quote(pid, safe="")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def login(self) -> None:
        """Exchange username/password for a token at ``/api/v3/auth/login``."""
        settings = self.settings
        if not settings.username:
            return
        with self._login_lock:
            response = self._send(
                "POST",
                self.url("auth/login", base=settings.v3_base),
                json={"username": settings.username, "password": settings.password.get_secret_value()},
                authenticated=False,
            )
            body = _json(response)
            token = body.get("access_token") or body.get("id") if isinstance(body, dict) else None
            if response.status_code >= 400:  # a refused login is a failed SciCat request too
                metrics.count_scicat_error(_error_kind(response.status_code))
            if response.status_code in TRANSIENT_STATUSES:
                raise ScicatUnavailable(
                    f"SciCat login as {settings.username!r}: answered {response.status_code}",
                    status=response.status_code,
                )
            if response.status_code >= 400 or not token:
                detail = server_message(body) if response.status_code >= 400 else "no token in the answer"
                raise ScicatAuthError(
                    f"SciCat login as {settings.username!r} failed ({response.status_code}: {detail}) "
                    f"at {_path(response.url or '')}; check scicat.username and the password "
                    "(OFFLINE_INGESTOR_SCICAT_PASSWORD or scicat.password_file)",
                    status=response.status_code,
                    detail=detail,
                )
            self._token = str(token)
            self._anonymous = None

    def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Any = None,
        authenticated: bool = True,
        write: bool = False,
    ) -> requests.Response:
        self._limiter.wait()
        if write:
            # After the rate limiter's wait, right before the bytes go: the in-flight window
            # (ingest/executor.py) is timed from here, also for the re-send after a re-login.
            announce_write()
        try:
            return self.session.request(
                method,
                url,
                json=json,
                params=params,
                headers=self._headers() if authenticated else {},
                timeout=self.settings.timeout,
            )
        except requests.Timeout:
            metrics.count_scicat_error("timeout")
            raise ScicatUnavailable(f"SciCat {method} {_path(url)} timed out") from None
        except requests.ConnectionError as exc:
            metrics.count_scicat_error("connection")
            reason = type(exc.__context__ or exc).__name__
            raise ScicatUnavailable(f"SciCat {method} {_path(url)}: connection failed ({reason})") from None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        ok_statuses: tuple[int, ...] = (),
        base: str | None = None,
        write: bool = False,
    ) -> tuple[int, Any]:
        """Send one call; return (status, body) for 2xx or ``ok_statuses``, else raise.

        Transient failures raise ``ScicatUnavailable`` (with the server's ``Retry-After``),
        others ``ScicatRejected``. An expired session is renewed once when we can log in.
        """
        if self.settings.username and not self._token:
            self.login()
        url = self.url(path, base=base)
        response = self._send(method, url, json=json, params=params, write=write)
        # A bad or foreign token is anonymous to SciCat: 403, never 401 (CONTRACT §0).
        if self._expired(response.status_code) and self.settings.username:
            self.login()
            response = self._send(method, url, json=json, params=params, write=write)
        status = response.status_code
        body = _json(response)
        if status < 300 or status in ok_statuses:
            _check_readable(method, url, response, body)
            return status, body
        error = error_for_response(method, _path(url), status, body)
        metrics.count_scicat_error(_error_kind(status))
        if isinstance(error, ScicatUnavailable):
            error.retry_after = _retry_after(response)
        if self._expired(status):
            raise ScicatAuthError(
                f"{error.message} - SciCat does not accept our credentials: it treats the "
                f"request as anonymous ({self._credential_source()}); a token from another or "
                "restarted SciCat, an expired or mistyped token, or a failed login",
                status=status,
                detail=getattr(error, "detail", ""),
            )
        raise error

    def _expired(self, status: int) -> bool:
        return status == 401 or (status == 403 and self._rejects_token())

    def _credential_source(self) -> str:
        if self.settings.username:
            return f"logged in as {self.settings.username!r}"
        return "scicat.token / OFFLINE_INGESTOR_SCICAT_TOKEN" if self._token else "no credentials configured"

    def _rejects_token(self) -> bool:
        """Whether SciCat takes our requests as anonymous (whoami answers an empty body)."""
        if self._anonymous is None:
            try:
                response = self._send("GET", self.url("auth/whoami", base=self.settings.v3_base))
            except ScicatUnavailable:
                return False
            self._anonymous = response.status_code == 200 and not isinstance(_json(response), dict)
        return self._anonymous

    # -- the calls an ingestor makes ------------------------------------------------------

    def get_json(self, path: str) -> Any:
        """GET for ``SC`` schema variables: a full URL as is, else under the v3 root.

        As upstream, a path starting with an ``api_endpoints`` key (``proposals/...``) uses
        the endpoint configured for it.
        """
        if path.startswith(("http://", "https://")):
            return self.request("GET", path, base="")[1]
        head, sep, rest = path.partition("/") if "/" in path.split("?")[0] else path.partition("?")
        endpoint = getattr(self.settings.api_endpoints, head, None)
        if isinstance(endpoint, str) and endpoint:
            path = f"{endpoint}{sep}{rest}"
        return self.request("GET", path, base=self.settings.v3_base)[1]

    def get_dataset(self, pid: str) -> dict[str, Any] | None:
        """The dataset with this pid, or None when SciCat has none."""
        status, body = self.request(
            "GET", f"{self.settings.api_endpoints.datasets}/{self.quote_pid(pid)}", ok_statuses=(404,)
        )
        return None if status == 404 else body

    def find_datasets(self, where: dict[str, Any]) -> list[dict[str, Any]]:
        """Datasets matching a loopback ``where`` filter (only those we may read)."""
        import json as _json_module

        _, body = self.request(
            "GET",
            self.settings.api_endpoints.datasets,
            params={"filter": _json_module.dumps({"where": where})},
        )
        if body is not None and not isinstance(body, list):
            # "not found" must come from SciCat saying so, not from an answer we cannot read
            raise ScicatUnavailable(f"SciCat dataset search answered {type(body).__name__}, not a list")
        return list(body or [])

    def create_dataset(self, payload: dict[str, Any]) -> tuple[int, Any]:
        """POST a dataset; 409 (pid exists) is returned, not raised."""
        endpoint = self.settings.api_endpoints.datasets
        return self.request("POST", endpoint, json=payload, ok_statuses=(409,), write=True)

    def origdatablocks_of(self, pid: str) -> list[dict[str, Any]]:
        """The origdatablocks attached to a dataset (read through the v3 route)."""
        path = f"datasets/{self.quote_pid(pid)}/origdatablocks"
        _, body = self.request("GET", path, base=self.settings.v3_base)
        if body is not None and not isinstance(body, list):
            raise ScicatUnavailable(
                f"SciCat's origdatablock list of {pid} is {type(body).__name__}, not a list"
            )
        return list(body or [])

    def create_origdatablock(self, payload: dict[str, Any], *, v3: bool = False) -> Any:
        """POST an origdatablock (``datasetId`` inside the payload); ``v3``: through the v3 route.

        The v3 route lets a privileged account create blocks for datasets it may not update
        (CONTRACT.md §2.4).
        """
        path, base = (
            ("origdatablocks", self.settings.v3_base)
            if v3
            else (self.settings.api_endpoints.origdatablocks, None)
        )
        return self.request("POST", path, json=payload, base=base, write=True)[1]

    def find_jobs(self, where: dict[str, Any]) -> list[dict[str, Any]]:
        """Jobs whose fields equal ``where``'s (dotted paths into ``jobParams`` allowed).

        v4 filters ``GET jobs?filter={"where": ...}``; v3's ``GET jobs`` refuses any ``where``
        (its filter pipe allows none), so v3 asks ``GET jobs/fullquery?fields=...``.
        """
        import json as _json_module

        endpoint = self.settings.api_endpoints.jobs
        if self.settings.api_version == "v4":
            params = {"filter": _json_module.dumps({"where": where})}
            _, body = self.request("GET", endpoint, params=params)
        else:
            params = {"fields": _json_module.dumps(where)}
            _, body = self.request("GET", f"{endpoint}/fullquery", params=params)
        if body is not None and not isinstance(body, list):
            raise ScicatUnavailable(f"SciCat job search answered {type(body).__name__}, not a list")
        return list(body or [])

    def create_job(self, payload: dict[str, Any]) -> Any:
        """POST a job (SciCat chooses its id: ``post-job`` looks its marker up first)."""
        return self.request("POST", self.settings.api_endpoints.jobs, json=payload, write=True)[1]

    def get_sample(self, sample_id: str) -> dict[str, Any] | None:
        """The sample with this id, or None when SciCat has none (read through the v3 route)."""
        path = f"{self.settings.api_endpoints.samples}/{self.quote_pid(sample_id)}"
        status, body = self.request("GET", path, ok_statuses=(404,), base=self.settings.v3_base)
        if status == 404:
            return None
        if not isinstance(body, dict):
            raise ScicatUnavailable(f"SciCat GET of sample {sample_id} answered {type(body).__name__}")
        return body

    def create_sample(self, payload: dict[str, Any]) -> tuple[int, Any]:
        """POST a sample with its ``sampleId``; 409 (the id exists) is returned, not raised."""
        path = self.settings.api_endpoints.samples
        base = self.settings.v3_base
        return self.request("POST", path, json=payload, ok_statuses=(409,), base=base, write=True)

    def is_valid(
        self, endpoint: str, payload: dict[str, Any], *, base: str | None = None
    ) -> tuple[bool, str]:
        """Ask SciCat's ``isValid`` route; (valid, reason). v4 gives no reason (``""``)."""
        _, body = self.request("POST", f"{endpoint}/isValid", json=payload, base=base)
        body = body if isinstance(body, dict) else {}
        reason = body.get("error") or body.get("reason") or body.get("errors") or ""
        return bool(body.get("valid")), reason if isinstance(reason, str) else _short(reason)

    def whoami(self) -> dict[str, Any] | None:
        """The account as SciCat sees it (``currentGroups``), None when we are anonymous."""
        _, body = self.request("GET", "auth/whoami", base=self.settings.v3_base)
        return body if isinstance(body, dict) else None

    def patch_dataset(self, pid: str, fields: dict[str, Any]) -> Any:
        """PATCH some fields of a dataset (used to repair ``size``/``numberOfFiles``)."""
        path = f"{self.settings.api_endpoints.datasets}/{self.quote_pid(pid)}"
        return self.request("PATCH", path, json=fields, write=True)[1]

    def health(self) -> Any:
        """GET the health endpoint (no auth needed)."""
        return self.request("GET", self.settings.health_endpoint, base=self.settings.v3_base)[1]


def _freeze_environment(session: requests.Session, settings: ScicatOptions) -> None:
    """Read proxy and CA-bundle variables once instead of on every request.

    With ``trust_env`` on, requests scans the environment for proxies, evaluates
    ``no_proxy``, reads ``~/.netrc`` and looks up ``REQUESTS_CA_BUNDLE`` on *every* call:
    about a quarter of a SciCat call's client CPU in a worker child (bench/RESULTS.md,
    profile). SciCat is one host, so we resolve them here once and switch it off. This also
    keeps a ``~/.netrc`` entry from replacing our Bearer header with basic auth.
    """
    if not session.trust_env:
        return
    session.proxies.update(requests.utils.get_environ_proxies(settings.api_base))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


class _Unreadable(str):
    """A body that was not JSON, kept as text for messages."""


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return _Unreadable(response.text[:500])


def _check_readable(method: str, url: str, response: requests.Response, body: Any) -> None:
    """A 2xx whose body is not JSON (a maintenance page, a proxy's HTML) is transient.

    SciCat only answers JSON; anything else came from something in front of it. For a create
    the write may or may not have happened: the step's retry looks the dataset up first.
    """
    if not isinstance(body, _Unreadable):
        return
    ctype = response.headers.get("Content-Type", "")
    kind = "HTML" if body.lstrip()[:1] == "<" or "html" in ctype.lower() else "non-JSON"
    raise ScicatUnavailable(
        f"SciCat {method} {_path(url)} answered {response.status_code} with an unreadable "
        f"{kind} body (a proxy or maintenance page?): {body[:80]!r}",
        status=response.status_code,
    )


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(float(value), 60.0)
    except ValueError:
        return None


def _short(value: Any) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) < 500 else text[:497] + "..."


def _error_kind(status: int) -> str:
    """The ``kind`` label of a failed request in the metrics."""
    if status == 429:
        return "rate_limited"
    return "server" if status >= 500 else "client"
