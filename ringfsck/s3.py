"""S3 access for the store and the inputs: one boto3 client, retries, one-line errors.

Where the client talks to and as whom, first match wins:

* endpoint: ``s3.endpoint`` (``host:port`` without a scheme means plain HTTP, as
  the reference's config has it), ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``,
  else AWS itself. A custom endpoint is addressed path-style
  (``http://host:port/bucket/key``), which every S3 connector serves;
* credentials: ``s3.access_key``/``s3.secret_key`` (and ``session_token``), else
  boto3's standard chain (``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE`` or
  ``s3.profile``, the shared files, instance roles);
* TLS: ``s3.ca_bundle``, else ``AWS_CA_BUNDLE``, else the system bundle;
  ``s3.verify_tls: false`` turns verification off.

Requests are retried by botocore's *standard* mode (5xx, throttling, timeouts and
dropped connections, ``retries + 1`` attempts); a streamed GET that breaks
midway is resumed with a ranged GET pinned to the object's ETag. Every failure
becomes a :class:`~ringfsck.errors.RingfsckError` whose one line names the bucket
or object and the endpoint, never a credential.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ringfsck.config import Settings
from ringfsck.errors import ConfigError, InputError, RemoteError, RingfsckError
from ringfsck.redact import redact

SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"
# Above this size uploads go multipart (so a large Parquet part survives a
# dropped connection part by part); below it one PUT, whose answer carries the ETag.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
    }
)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def is_s3_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith(SCHEME)


@dataclass(frozen=True)
class S3Url:
    """``s3://bucket/key``; ``key`` may be empty (the whole bucket) or a prefix."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str) -> S3Url:
        bucket, _, key = text[len(SCHEME) :].partition("/")
        if not text.startswith(SCHEME) or not bucket:
            raise ConfigError(f"{redact(text)}: not an S3 location (expected s3://BUCKET/PREFIX)")
        if "@" in bucket:  # s3a://KEY:SECRET@bucket (old Hadoop style): the location would carry the secret
            raise ConfigError(f"{redact(text)}: credentials in an S3 location are not accepted; set s3.access_key and s3.secret_key")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def join(self, relative: str) -> S3Url:
        base = self.key.rstrip("/")
        return S3Url(self.bucket, f"{base}/{relative}" if base else relative)


@dataclass(frozen=True)
class S3Object:
    """One listed object: what identifies its content without reading it."""

    url: S3Url
    size: int
    etag: str  # without quotes
    last_modified: datetime


def endpoint_url(settings: Settings, env: Mapping[str, str] | None = None) -> str | None:
    """The custom endpoint, if any, with a scheme (``host:port`` means plain HTTP)."""
    env = os.environ if env is None else env
    raw = settings.s3.endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if not raw:
        return None
    raw = raw.strip().rstrip("/")
    return raw if "://" in raw else f"http://{raw}"


def _display(endpoint: str | None) -> str:
    """An endpoint fit for a message: any user:password@ part removed."""
    if not endpoint:
        return "the AWS S3 endpoint"
    return redact(endpoint)


def _quiet_botocore() -> None:
    # botocore's DEBUG records carry the signed request headers (access key id,
    # signatures): keep them off even under a DEBUG root logger.
    for name in ("botocore", "boto3", "s3transfer"):
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET (0) included
            logger.setLevel(logging.INFO)


def _strip_etag(etag: str) -> str:
    return etag.strip('"')


class S3:
    """A boto3 S3 client with ringfsck's retry policy; every call maps errors to one line."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.endpoint = endpoint_url(settings, env)
        self.attempts = max(1, settings.retries + 1)
        self._client: Any = None

    @property
    def where(self) -> str:
        return _display(self.endpoint)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
            self._preflight()
        return self._client

    def _preflight(self) -> None:
        """Fail at once, in one line, when a custom endpoint refuses connections.

        Without it a wrong host:port spends every retry (half a minute of backoff)
        before saying so. Skipped when a proxy carries the traffic.
        """
        if not self.endpoint:
            return
        parts = urlsplit(self.endpoint)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        if urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
            return
        last: OSError | None = None
        for attempt in range(3):
            try:
                socket.create_connection((host, port), timeout=min(self.settings.timeout, 5.0)).close()
                return
            except OSError as exc:
                last = exc
                if attempt < 2:
                    time.sleep(0.2 * (attempt + 1))
        reason = (last.strerror or type(last).__name__) if last else "unknown"
        raise RemoteError(f"cannot reach the S3 endpoint {self.where}: {reason}")

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ProfileNotFound

        _quiet_botocore()
        s3 = self.settings.s3
        keys = {}
        if s3.access_key or s3.secret_key:
            if not (s3.access_key and s3.secret_key):
                raise ConfigError("s3: give both access_key and secret_key (or neither, to use the AWS environment or a profile)")
            keys = {"aws_access_key_id": s3.access_key, "aws_secret_access_key": s3.secret_key, "aws_session_token": s3.session_token}
        try:
            session = boto3.session.Session(profile_name=s3.profile if not keys else None, region_name=s3.region, **keys)
        except ProfileNotFound as exc:
            raise ConfigError(f"s3: {exc}") from None
        verify: bool | str | None = None
        if s3.ca_bundle:
            if not Path(s3.ca_bundle).is_file():
                raise ConfigError(f"s3.ca_bundle: {s3.ca_bundle}: no such file")
            verify = s3.ca_bundle
        elif not s3.verify_tls:
            verify = False
        config = Config(
            retries={"mode": "standard", "total_max_attempts": self.attempts},  # the first try included
            connect_timeout=min(self.settings.timeout, 10.0),
            read_timeout=self.settings.timeout,
            # S3 connectors (and older S3 servers) reject the CRC trailers and
            # aws-chunked bodies newer botocore adds by default: send them only when required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if self.endpoint else {},
            max_pool_connections=16,
        )
        try:
            return session.client(
                "s3", endpoint_url=self.endpoint, verify=verify, config=config, region_name=session.region_name or DEFAULT_REGION
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"s3: cannot use the endpoint {self.where}: {type(exc).__name__}") from None

    # --- errors ---------------------------------------------------------
    @contextmanager
    def errors(self, target: S3Url | str) -> Iterator[None]:
        """Turn boto3/botocore failures about ``target`` into one-line ringfsck errors."""
        try:
            yield
        except RingfsckError:
            raise
        except Exception as exc:
            translated = self._translate(exc, target)
            if translated is None:
                raise
            raise translated from None

    def _translate(self, exc: Exception, target: S3Url | str) -> RingfsckError | None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
            SSLError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        where = self.where
        bucket = f"{SCHEME}{target.bucket}" if isinstance(target, S3Url) else str(target)
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                return InputError(f"{bucket}: no such bucket on {where}")
            if code in _MISSING_KEY_CODES:
                return InputError(f"{target}: no such object on {where}")
            if code in _AUTH_CODES or status == 401:
                return ConfigError(
                    f"{target}: {where} refused the S3 credentials ({code or status}): check s3.access_key and s3.secret_key, "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile"
                )
            if code == "AccessDenied" or status == 403:
                return ConfigError(f"{target}: access denied by {where} ({code or status}): the credentials lack permission there")
            if code in ("PreconditionFailed",) or status == 412:
                return InputError(f"{target}: the object changed while it was being read; run the command again")
            if status >= 500:
                return RemoteError(f"{target}: {where} failed after {self.attempts} attempts (HTTP {status} {code})")
            return RemoteError(f"{target}: {where} answered HTTP {status} {code}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigError(
                f"{target}: no S3 credentials: set s3.access_key and s3.secret_key in the config, "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        if isinstance(exc, SSLError):
            return RemoteError(
                f"{target}: TLS with {where} failed: set s3.ca_bundle (or AWS_CA_BUNDLE) to the CA that signed its certificate"
            )
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return RemoteError(f"{target}: cannot reach {where} after {self.attempts} attempts ({type(exc).__name__})")
        if isinstance(exc, S3UploadFailedError):
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, Exception) and not isinstance(cause, S3UploadFailedError):
                return self._translate(cause, target) or RemoteError(f"{target}: upload to {where} failed")
            return RemoteError(f"{target}: upload to {where} failed")
        if isinstance(exc, BotoCoreError):
            return RemoteError(f"{target}: S3 request to {where} failed ({type(exc).__name__})")
        return None

    # --- operations -----------------------------------------------------
    def list(self, url: S3Url) -> Iterator[S3Object]:
        """Every object whose key starts with ``url.key``, in key order (paginated)."""
        with self.errors(url):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=url.bucket, Prefix=url.key)
            for page in pages:
                for item in page.get("Contents", []):
                    yield S3Object(
                        S3Url(url.bucket, item["Key"]), int(item["Size"]), _strip_etag(item.get("ETag", "")), item["LastModified"]
                    )

    def head(self, url: S3Url) -> S3Object:
        with self.errors(url):
            answer = self.client.head_object(Bucket=url.bucket, Key=url.key)
        return S3Object(url, int(answer["ContentLength"]), _strip_etag(answer.get("ETag", "")), answer["LastModified"])

    def upload(self, path: Path, url: S3Url) -> str:
        """Upload a local file (one atomic PUT, or multipart when large); return its ETag."""
        with self.errors(url):
            if path.stat().st_size <= MULTIPART_THRESHOLD:
                with open(path, "rb") as body:
                    return _strip_etag(self.client.put_object(Bucket=url.bucket, Key=url.key, Body=body)["ETag"])
            from boto3.s3.transfer import TransferConfig

            transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD, max_concurrency=4)
            self.client.upload_file(str(path), url.bucket, url.key, Config=transfer)
            return _strip_etag(self.client.head_object(Bucket=url.bucket, Key=url.key)["ETag"])

    def download(self, obj: S3Object, path: Path) -> None:
        """Download an object to ``path`` atomically (a temporary file renamed over it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                if obj.size <= MULTIPART_THRESHOLD:
                    # One GET (no HEAD first), resumed if the connection drops.
                    with self.open_stream(obj) as stream:
                        shutil.copyfileobj(stream, handle, 1024 * 1024)
                else:
                    from boto3.s3.transfer import TransferConfig

                    transfer = TransferConfig(
                        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD, max_concurrency=4
                    )
                    with self.errors(obj.url):
                        self.client.download_fileobj(obj.url.bucket, obj.url.key, handle, Config=transfer)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def delete(self, url: S3Url) -> None:
        with self.errors(url):
            self.client.delete_object(Bucket=url.bucket, Key=url.key)

    def open_stream(self, obj: S3Object) -> io.RawIOBase:
        """The object's bytes as a stream, never held whole in memory; resumes after a dropped connection."""
        return _ResumingReader(self, obj)


class _ResumingReader(io.RawIOBase):
    """Reads an object with GET; a broken stream is reopened at the offset reached (same ETag)."""

    def __init__(self, s3: S3, obj: S3Object) -> None:
        self._s3 = s3
        self._obj = obj
        self._offset = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        request: dict[str, Any] = {"Bucket": self._obj.url.bucket, "Key": self._obj.url.key}
        if self._obj.etag:
            request["IfMatch"] = f'"{self._obj.etag}"'  # a rewritten object must not be stitched to the old one
        if self._offset:
            request["Range"] = f"bytes={self._offset}-"
        with self._s3.errors(self._obj.url):
            self._body = self._s3.client.get_object(**request)["Body"]

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # readinto takes any writable buffer; a memoryview is what callers pass
        from botocore.exceptions import HTTPClientError, IncompleteReadError

        if self._offset >= self._obj.size:
            return 0
        failures = 0
        while True:
            try:
                if self._body is None:
                    self._open()
                data = self._body.read(len(buffer))
                if not data:
                    raise IncompleteReadError(actual_bytes=self._offset, expected_bytes=self._obj.size)
                break
            except (HTTPClientError, IncompleteReadError, OSError) as exc:
                self._close_body()
                failures += 1
                if failures >= self._s3.attempts:
                    raise RemoteError(
                        f"{self._obj.url}: reading from {self._s3.where} failed {failures} times at byte {self._offset} ({type(exc).__name__})"
                    ) from None
                time.sleep(min(0.1 * 2**failures, 5.0))
        size = len(data)
        buffer[:size] = data
        self._offset += size
        return size

    def _close_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:  # noqa: BLE001 - closing a broken stream may fail again; it is dropped anyway
                pass
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()


@contextmanager
def local_output(location: str | Path, settings: Settings) -> Iterator[Path]:
    """A local file to write ``location`` to: the path itself, or a temporary file uploaded to S3 on success."""
    if not is_s3_url(location):
        yield Path(location)
        return
    url = S3Url.parse(str(location))
    if not url.name:
        raise ConfigError(f"{location}: name an object, not a bucket or a prefix ending in /")
    with tempfile.TemporaryDirectory(prefix="ringfsck-out-") as tmp:
        path = Path(tmp) / url.name
        yield path
        S3(settings).upload(path, url)


@contextmanager
def local_input(location: str | Path, settings: Settings) -> Iterator[Path]:
    """A local copy of ``location``: the path itself, or the S3 object downloaded to a temporary file."""
    if not is_s3_url(location):
        yield Path(location)
        return
    url = S3Url.parse(str(location))
    s3 = S3(settings)
    with tempfile.TemporaryDirectory(prefix="ringfsck-in-") as tmp:
        path = Path(tmp) / (url.name or "object")
        s3.download(s3.head(url), path)
        yield path
