"""boto3 clients for posture collection, and the one place API errors become "unavailable".

Client construction goes through the project-wide :class:`s3sync.aws.ClientFactory` (same
``--endpoint-url``/``--profile``/``--region`` rules and adaptive retries as the audit).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping


@dataclass(frozen=True)
class Unavailable:
    """An API that did not answer: not enabled, access denied, not implemented, unreachable."""

    operation: str
    code: str
    message: str

    @property
    def reason(self) -> str:
        return f"{self.operation}: {self.code}: {self.message}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {"unavailable": {"operation": self.operation, "code": self.code, "message": self.message}}

    def __str__(self) -> str:
        return self.reason


def is_unavailable(value: Any) -> bool:
    return isinstance(value, Unavailable)


def _strip_account_host_prefix(request: Any, **_: Any) -> None:
    """s3control prefixes the host with the account id; a local endpoint (moto) cannot resolve that."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(request.url)
    host = parts.netloc
    first, _, rest = host.partition(".")
    if first.isdigit() and len(first) == 12 and rest:
        request.url = urlunsplit(parts._replace(netloc=rest))


class Clients:
    """Creates (once, thread-safely) the boto3 client of each service, via :class:`s3sync.aws.ClientFactory`.

    ``endpoint_url`` applies to every service (moto serves them all on one URL); when it is None,
    botocore honours ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` itself.
    ``overrides`` maps a service name to a ready client (e.g. S3 on SeaweedFS, the rest on moto).
    boto3 clients are thread-safe, so one per service is shared by the collector's threads.
    """

    def __init__(self, session: Any = None, endpoint_url: str | None = None, region: str | None = None,
                 profile: str | None = None, overrides: Mapping[str, Any] | None = None,
                 factory: Any = None) -> None:
        from s3sync.aws import ClientFactory

        self.factory = factory or ClientFactory(endpoint_url=endpoint_url, profile=profile, region=region,
                                                max_pool=16)
        if session is not None:
            self.factory._session = session
        self.endpoint_url = self.factory.endpoint_url
        self.region = self.factory.region
        self._cache: dict[str, Any] = dict(overrides or {})
        self._lock = threading.Lock()

    @classmethod
    def from_args(cls, args: Any) -> "Clients":
        """From an argparse namespace with endpoint_url / profile / region."""
        return cls(endpoint_url=getattr(args, "endpoint_url", None), profile=getattr(args, "profile", None),
                   region=getattr(args, "region", None))

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._cache:
                self._cache[service] = self._make(service)
            return self._cache[service]

    def _make(self, service: str) -> Any:
        client = self.factory.new_client(service)
        endpoint = client.meta.endpoint_url or ""
        if service == "s3control" and "amazonaws.com" not in endpoint:
            client.meta.events.register("before-send.s3-control", _strip_account_host_prefix)
        return client


def call(fn: Callable[..., Any], operation: str, absent: Iterable[str] = (), **kwargs: Any) -> Any:
    """Run one API call; errors become :class:`Unavailable`, "not configured" codes become None.

    Never raises for AWS-side problems: a posture run must report what it could not see.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        resp = fn(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "ClientError")
        if code in set(absent):
            return None
        msg = str(err.get("Message") or "")
        if "<html" in msg.lower() or "<!doctype" in msg.lower():
            msg = "the endpoint does not implement this API"
        return Unavailable(operation, code, msg[:300])
    except BotoCoreError as exc:
        return Unavailable(operation, type(exc).__name__, str(exc)[:300])
    except (OSError, ValueError) as exc:
        return Unavailable(operation, type(exc).__name__, str(exc)[:300])
    if isinstance(resp, dict):
        resp = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
    return resp


def paginate(client: Any, method: str, key: str, operation: str, **kwargs: Any) -> list | Unavailable:
    """All items under ``key`` across pages (paginator when botocore has one), or Unavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    items: list = []
    try:
        if client.can_paginate(method):
            for page in client.get_paginator(method).paginate(**kwargs):
                items.extend(page.get(key, []) or [])
            return items
    except (ClientError, BotoCoreError, OSError, ValueError):
        pass  # fall through to the single call for a clean Unavailable
    kwargs.pop("PaginationConfig", None)  # a paginator option, not an API parameter
    resp = call(getattr(client, method), operation, **kwargs)
    if isinstance(resp, Unavailable):
        return resp
    return list((resp or {}).get(key, []) or [])
