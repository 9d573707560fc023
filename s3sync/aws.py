"""The one place that builds boto3 sessions and clients for synthguard.

Why one place: every room (the audit worker, CloudFront, posture, the fingerprint registry) must
honour the same options the AWS CLI users expect (``--endpoint-url``, ``--profile``, ``--region``
and the ``AWS_*`` variables), use botocore's adaptive retries (throttling, 503 SlowDown, resets),
and never share a client between threads in a way that serialises I/O.

Endpoint rules: an explicit ``endpoint_url`` applies to every service. When it is not given we
leave ``endpoint_url`` unset, so botocore's own ``AWS_ENDPOINT_URL`` and the service-specific
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_CLOUDFRONT`` variables (and profile ``endpoint_url``
settings) apply: the CloudFront tests point S3 at SeaweedFS and CloudFront at moto that way.

Usage::

    factory = ClientFactory(endpoint_url=None, profile=None, region=None, max_pool=32)
    s3 = factory.client("s3")          # cached per thread: call it from each worker thread
    factory.session                     # the boto3.Session (profile / region resolved)
"""
from __future__ import annotations

import os
import threading
from typing import Any

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0


def _env_endpoint(service: str) -> str | None:
    """The endpoint botocore would pick up from the environment for ``service`` (or None)."""
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_").replace(" ", "_")
    return os.environ.get(specific) or os.environ.get("AWS_ENDPOINT_URL") or None


class ClientFactory:
    """Builds (and caches, per thread and service) boto3 clients with one consistent configuration.

    ``max_pool`` sizes urllib3's connection pool per client (botocore's ``max_pool_connections``);
    ``max_attempts`` and ``retry_mode`` feed botocore's retry handler ("adaptive" adds client-side
    rate limiting on throttling errors, on top of "standard" retries of 5xx, resets and timeouts).
    """

    def __init__(self, endpoint_url: str | None = None, profile: str | None = None,
                 region: str | None = None, *, max_pool: int = 10,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, retry_mode: str = "adaptive",
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT,
                 addressing_style: str | None = None,
                 credentials: dict[str, str] | None = None, raw_timestamps: bool = False) -> None:
        self.endpoint_url = endpoint_url or None
        self.profile = profile or None
        self.region = region or None
        self.max_pool = max(1, int(max_pool))
        self.max_attempts = max(1, int(max_attempts))
        self.retry_mode = retry_mode
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.addressing_style = addressing_style
        self._credentials = dict(credentials or {})
        self.raw_timestamps = raw_timestamps
        self._session: Any = None
        self._lock = threading.Lock()  # boto3 sessions are not thread-safe when creating clients
        self._local = threading.local()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_args(cls, args: Any, **kw: Any) -> "ClientFactory":
        """From an argparse namespace with ``endpoint_url``/``profile``/``region`` (missing = None)."""
        return cls(endpoint_url=getattr(args, "endpoint_url", None), profile=getattr(args, "profile", None),
                   region=getattr(args, "region", None), **kw)

    def __repr__(self) -> str:
        return (f"ClientFactory(endpoint_url={self.endpoint_url!r}, profile={self.profile!r}, "
                f"region={self.region!r}, max_pool={self.max_pool})")

    @property
    def session(self):
        """The boto3 Session (created once; ``--profile`` errors surface here as ValueError)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import boto3
                    from botocore.exceptions import ProfileNotFound

                    try:
                        session = boto3.Session(profile_name=self.profile, region_name=self.region,
                                                **self._credentials)
                    except ProfileNotFound as exc:
                        raise ValueError(f"AWS profile not found: {self.profile}") from exc
                    self._session = session
        return self._session

    def derive(self, **overrides: Any) -> "ClientFactory":
        """A new factory with these settings and some changed (its own session and clients)."""
        kw: dict[str, Any] = dict(endpoint_url=self.endpoint_url, profile=self.profile, region=self.region,
                                  max_pool=self.max_pool, max_attempts=self.max_attempts,
                                  retry_mode=self.retry_mode, connect_timeout=self.connect_timeout,
                                  read_timeout=self.read_timeout, addressing_style=self.addressing_style,
                                  credentials=self._credentials, raw_timestamps=self.raw_timestamps)
        kw.update(overrides)
        return ClientFactory(**kw)

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint in effect for ``service``: explicit, else the environment's, else None (AWS)."""
        return self.endpoint_url or _env_endpoint(service)

    def config(self, service: str = "s3", **overrides: Any):
        """The botocore Config every client gets (retries, pool size, timeouts, S3 addressing)."""
        from botocore.config import Config

        kw: dict[str, Any] = dict(
            retries={"mode": self.retry_mode, "max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )
        if service == "s3":
            style = self.addressing_style
            if style is None:
                # Local S3 servers (SeaweedFS, MinIO, moto) answer path-style; AWS picks its own.
                style = "path" if self.endpoint_for("s3") else "auto"
            kw["s3"] = {"addressing_style": style}
        kw.update(overrides)
        return Config(**kw)

    def new_client(self, service: str, *, raw_timestamps: bool = False, **kw: Any):
        """A fresh client (not cached). Prefer :meth:`client` in worker threads.

        ``raw_timestamps`` leaves timestamps as the ISO strings the service sent (what the AWS CLI
        does): listing a big bucket otherwise spends most of its CPU in dateutil parsing LastModified.
        """
        cfg = kw.pop("config", None) or self.config(service)
        args: dict[str, Any] = {"config": cfg}
        if self.endpoint_url:
            args["endpoint_url"] = self.endpoint_url
        if self.region:
            args["region_name"] = self.region
        elif not self.session.region_name:
            # No region anywhere: S3/CloudFront work from us-east-1, and a local endpoint ignores it.
            args["region_name"] = "us-east-1"
        args.update(kw)
        session = self.session
        with self._lock:
            client = session.client(service, **args)
        if raw_timestamps or self.raw_timestamps:
            _raw_timestamps(client)
        return client

    def client(self, service: str = "s3", *, raw_timestamps: bool = False):
        """The calling thread's client for ``service`` (one per thread and service, created lazily)."""
        cache = getattr(self._local, "clients", None)
        if cache is None:
            cache = self._local.clients = {}
        c = cache.get((service, raw_timestamps))
        if c is None:
            c = cache[(service, raw_timestamps)] = self.new_client(service, raw_timestamps=raw_timestamps)
        return c

    def clients(self) -> "ClientFactory":
        """Convenience for APIs that take a ``clients`` object: the factory is that object."""
        return self


def _identity(value: Any) -> Any:
    return value


def _raw_timestamps(client: Any) -> None:
    """Give this client's endpoint its own response-parser factory that keeps timestamps as strings.

    botocore parses every response with the factory its endpoint holds (shared session-wide);
    a private one changes this client only. If botocore's internals differ, timestamps are simply
    parsed as usual (slower, same results).
    """
    try:
        from botocore.parsers import ResponseParserFactory

        factory = ResponseParserFactory()
        factory.set_parser_defaults(timestamp_parser=_identity)
        endpoint = client._endpoint
        if hasattr(endpoint, "_response_parser_factory"):
            endpoint._response_parser_factory = factory
    except Exception:  # pragma: no cover - a botocore without these internals
        pass


def _stream_error_types() -> tuple[type, ...]:
    """Errors raised while a response body is read: resets, truncation, read timeouts."""
    import http.client

    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError, ResponseStreamingError

    types: tuple[type, ...] = (ResponseStreamingError, ConnectionClosedError, ReadTimeoutError, ConnectionError,
                               TimeoutError, http.client.IncompleteRead)
    try:
        from urllib3.exceptions import ProtocolError, ReadTimeoutError as U3ReadTimeout

        types += (ProtocolError, U3ReadTimeout)
    except ImportError:  # pragma: no cover
        pass
    return types


THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                            "ServiceUnavailable", "RequestLimitExceeded"})


def is_throttle_or_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a throttling / 5xx / connection error worth retrying later: a stream
    error (:func:`is_stream_error`), any connection failure, a 5xx or a throttling code."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

    types = _stream_error_types() + (ConnectTimeoutError, EndpointConnectionError)
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error

        types += (Urllib3Error,)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, types):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or code in THROTTLE_CODES
    return False


def is_stream_error(exc: BaseException) -> bool:
    """True for errors raised while *reading a response body* (a reset or truncation mid-stream).

    botocore retries the request itself (throttling, 5xx, resets before the response, timeouts)
    but not a body that breaks while the caller reads it: those the worker retries itself.
    """
    return isinstance(exc, _stream_error_types())


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed AWS call (error code + message, or the exception type)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        msg = err.get("Message") or ""
        op = getattr(exc, "operation_name", "")
        return f"{op}: {code}{': ' + msg if msg else ''}".strip(": ")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
