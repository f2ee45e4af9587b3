"""Settings: defaults < config file < ``RINGFSCK_*`` environment < command line.

The config file is YAML. The reference's ``config.yml`` is accepted as users
have it (``ring``, ``path``, ``protocol``, ``srebuildd_*``, ``retention``,
``arc_protection``, ``cos_protection``, ``s3``); unknown keys are ignored,
keys of the wrong type are rejected with a message naming the file and key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ringfsck.errors import ConfigError
from ringfsck.keys import ArcSchema, parse_arc, parse_cos

DEFAULT_CONFIG_NAME = "ringfsck.yml"
DEFAULT_STORE = "./ringfsck-store"
ENV_PREFIX = "RINGFSCK_"
SECRET_FIELDS = frozenset({"access_key", "secret_key", "session_token", "password"})
REDACTED = "***"
# The reference's input directories under {path}/{ring}/.
REFERENCE_INPUTS = {"listkeys": "listkeys.csv", "s3keys": "s3-bucketd"}


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _to_positive_int(value: Any) -> int:
    number = _to_int(value)
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def _to_share(value: Any) -> float:
    share = _to_float(value)
    if not 0 <= share <= 1:
        raise ValueError(f"expected a share between 0 and 1, got {value!r}")
    return share


def _to_str(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.lower() in {"1", "true", "yes", "on"}
    raise ValueError(f"expected true or false, got {value!r}")


def _to_protocol(value: Any) -> str:
    text = _to_str(value).lower()
    if text not in {"file", "s3a", "s3"}:
        raise ValueError(f"expected 'file' or 's3a', got {value!r}")
    return "s3a" if text == "s3" else text


_URL_SCHEMES = ("http", "https")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]+")  # a DNS name, IPv4 or (bracketed) IPv6


def _to_http_url(value: Any) -> str:
    """An HTTP service's base URL: ``http(s)://host[:port][/path]``, or ``host:port`` meaning plain HTTP.

    Normalised without a trailing slash. A malformed URL is a usage error here, not a
    remote error at the first request.
    """
    text = _to_str(value).strip()
    url = text if "://" in text else f"http://{text}"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when not a number from 0 to 65535
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in _URL_SCHEMES
        or not _HOSTNAME.fullmatch(parts.hostname or "")
        or port == 0
        or (parts.port is None and parts.netloc.endswith(":"))
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in text)
    ):
        raise ValueError(f"expected a URL such as http://10.0.0.5:81 or 10.0.0.5:81, got {value!r}")
    return url.rstrip("/")


def _to_http_urls(value: Any) -> tuple[str, ...]:
    """A list of URLs (or one string, comma-separated), each as ``_to_http_url``; duplicates dropped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected a list of URLs, got {value!r}")
    return tuple(dict.fromkeys(_to_http_url(item) for item in items if str(item).strip()))


def _to_host(value: Any) -> str:
    """``srebuildd_ip``: a host, or ``host:port`` (then ``srebuildd_port`` is not used)."""
    text = _to_str(value).strip()
    if "://" in text:
        raise ValueError(f"expected a host or host:port, got {value!r} (a URL goes in srebuildd_url)")
    _to_http_url(text)
    return text


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}


def parse_size(value: Any) -> int:
    """Bytes from ``10GiB``, ``500 MB``, ``1.5TiB`` or a plain number (KiB = 1024, KB = 1000); ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        text = _to_str(value).strip().replace(" ", "").replace("_", "")
        digits = len(text) - len(text.lstrip("0123456789."))
        number_text, unit = text[:digits], text[digits:].lower()
        try:
            number = float(number_text)
        except ValueError:
            raise ValueError(f"expected a size such as 10GiB or 500MB, got {value!r}") from None
    if unit not in _SIZE_UNITS or number < 0:
        raise ValueError(f"expected a size such as 10GiB or 500MB, got {value!r}")
    return int(number * _SIZE_UNITS[unit])


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None or value == "" else convert(value)


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 store and S3 inputs live; credentials are never printed."""

    endpoint: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None
    verify_tls: bool = True


@dataclass(frozen=True)
class SupSettings:
    """The RING's supervisor (docs/domain.md section 9), the reference's ``sup`` block; the password is never printed."""

    url: str | None = None  # e.g. https://10.0.0.2:2443
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None  # PEM file the supervisor's and nodes' certificates are checked against
    verify_tls: bool = True  # false only when asked: the reference turns it off


@dataclass(frozen=True)
class DuckDBSettings:
    # DuckDB's own default is 80 % of RAM; a fixed ceiling makes large analyses
    # spill to temp_directory instead of crowding a RING server's memory.
    memory_limit: str | None = "3GB"
    threads: int | None = None
    temp_directory: str | None = None  # where DuckDB spills; default: inside the store


@dataclass(frozen=True)
class DeleteBudget:
    """The most one ``delete --execute`` run deletes; None: no limit. The next run continues."""

    keys: int | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class CanarySettings:
    """Referenced input keys asked while deleting (docs/domain.md section 8): stop if one disappears."""

    sample: int = 20  # asked before the first DELETE
    first_after: int = 10  # asked again after this many deletions…
    every: int = 100  # …and then at least every this many
    wait_seconds: float = 300.0  # a canary that cannot be asked pauses deletion this long at most, then exit 5


@dataclass(frozen=True)
class Settings:
    store: str = DEFAULT_STORE
    ring: str = "DATA"
    # The reference's layout: with protocol s3a, ``path`` is the bucket.
    protocol: str = "file"
    path: str | None = None
    arc_protection: ArcSchema = ArcSchema(8, 4)
    cos_protection: int = 3
    min_chunks: int = 4  # ARC main chunks need more than 3 chunks to be candidates
    retention: int = 604800  # seconds; keys younger than this are kept out
    max_orphan_share: float = 0.10
    srebuildd_url: str | None = None
    # Several srebuildd endpoints sharing the per-key jobs (e.g. one per node); when set, srebuildd_url/_ip are not used.
    srebuildd_urls: tuple[str, ...] = ()
    srebuildd_ip: str | None = None
    srebuildd_port: int = 81
    srebuildd_arc_path: str | None = None
    srebuildd_arcdata_path: str | None = None
    srebuildd_chord_path: str | None = None
    bucketd_url: str | None = None
    split_threshold: int | None = None
    # Referenced ARC main chunks 'size' HEADs to measure what X-Scal-Size means (ringfsck.sizing).
    size_sample: int = 200
    concurrency: int = 64
    max_rps: float | None = None  # per endpoint
    max_rps_total: float | None = None  # over all the srebuildd endpoints
    timeout: float = 30.0
    retries: int = 5
    s3: S3Settings = S3Settings()
    sup: SupSettings = SupSettings()
    delete_budget: DeleteBudget = DeleteBudget()
    canaries: CanarySettings = CanarySettings()
    # ``ringfsck verify``: the command that reverse-looks-up one main chunk (ringfsck.reverse_lookup).
    # Placeholders: {key} (the main chunk), {node}, {ip}, {port} (the settings below).
    reverse_lookup_command: str | None = None
    reverse_lookup_node: str | None = None
    reverse_lookup_ip: str | None = None
    reverse_lookup_port: int | None = None
    reverse_lookup_timeout: float = 60.0
    # Local mirror of an S3 store (all DuckDB work reads it); default under ~/.cache/ringfsck/s3/.
    cache_dir: str | None = None
    duckdb: DuckDBSettings = DuckDBSettings()
    config_file: str | None = None

    # --- derived values -------------------------------------------------
    @property
    def arc_path(self) -> str:
        return (self.srebuildd_arc_path or f"rebuild/arc-{self.ring}").strip("/")

    @property
    def arcdata_path(self) -> str:
        return (self.srebuildd_arcdata_path or f"rebuild/arcdata-{self.ring}").strip("/")

    @property
    def chord_path(self) -> str:
        return (self.srebuildd_chord_path or f"rebuild/chord-{self.ring}").strip("/")

    @property
    def srebuildd_base_urls(self) -> list[str]:
        """Every srebuildd endpoint to ask: ``srebuildd_urls``, else the one of ``srebuildd_url`` or ``srebuildd_ip``."""
        if self.srebuildd_urls:
            return [url.rstrip("/") for url in self.srebuildd_urls]
        return [self._single_srebuildd_url] if self._single_srebuildd_url else []

    @property
    def srebuildd_base_url(self) -> str | None:
        """The first srebuildd endpoint (what printed commands carry)."""
        urls = self.srebuildd_base_urls
        return urls[0] if urls else None

    @property
    def _single_srebuildd_url(self) -> str | None:
        if self.srebuildd_url:
            return self.srebuildd_url.rstrip("/")
        if self.srebuildd_ip:
            with_port = urlsplit(f"http://{self.srebuildd_ip}").port is not None
            return f"http://{self.srebuildd_ip}" if with_port else f"http://{self.srebuildd_ip}:{self.srebuildd_port}"
        return None

    @property
    def store_location(self) -> str:
        """The store: ``--store`` wins; else the reference layout ``{path}/{ring}`` when ``path`` is set."""
        if self.store != DEFAULT_STORE or not self.path:
            return self.store
        if self.protocol == "s3a":
            return f"s3://{self.path.strip('/')}/{self.ring}"
        return str(Path(self.path) / self.ring)

    def reference_input(self, kind: str) -> str | None:
        """Where the reference keeps an input (``listkeys`` or ``s3keys``) under ``{path}/{ring}/``, if ``path`` is set."""
        if not self.path:
            return None
        name = REFERENCE_INPUTS[kind]
        if self.protocol == "s3a":
            return f"s3://{self.path.strip('/')}/{self.ring}/{name}/"
        return str(Path(self.path) / self.ring / name)

    def public_dict(self) -> dict[str, Any]:
        """Settings as plain data with every credential redacted (for summaries and logs)."""
        return _redact(dataclasses.asdict(self) | {"arc_protection": str(self.arc_protection)})


@dataclass(frozen=True)
class SrebuilddEndpoints:
    """The srebuildd endpoints a command asks, and the line that says so when they come from the RING listing."""

    urls: list[str]
    note: str | None = None  # None: the settings named them (or nothing did: ``urls`` is empty)


def srebuildd_endpoints(settings: Settings, listing_node_ips: Sequence[str] = ()) -> SrebuilddEndpoints:
    """Every srebuildd endpoint a command asks: the settings' own, else one per node of the native RING listing.

    srebuildd runs on every node (docs/domain.md section 5): without ``srebuildd_urls``,
    ``srebuildd_url`` or ``srebuildd_ip``, each distinct chord ip of the listing's nodes gives
    ``http://{ip}:{srebuildd_port}``. Neither: no endpoint, which the caller refuses. Endpoints
    that do not answer are set aside by the job's preflight, never read as answers.
    """
    if settings.srebuildd_base_urls:
        return SrebuilddEndpoints(settings.srebuildd_base_urls)
    hosts = dict.fromkeys(f"[{ip}]" if ":" in ip else ip for ip in listing_node_ips if ip)
    urls = [f"http://{host}:{settings.srebuildd_port}" for host in hosts]
    if not urls:
        return SrebuilddEndpoints([])
    plural = "s" if len(urls) > 1 else ""
    return SrebuilddEndpoints(
        urls, f"srebuildd: {len(urls)} endpoint{plural} from the RING listing's nodes (port {settings.srebuildd_port})"
    )


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if k in SECRET_FIELDS and v else _redact(v)) for k, v in value.items()}
    return value


_TOP_LEVEL: dict[str, Callable[[Any], Any]] = {
    "store": _to_str,
    "ring": _to_str,
    "protocol": _to_protocol,
    "path": _optional(_to_str),
    "arc_protection": parse_arc,
    "cos_protection": parse_cos,
    "min_chunks": _to_positive_int,
    "retention": _to_int,
    "max_orphan_share": _to_share,
    "srebuildd_url": _optional(_to_http_url),
    "srebuildd_urls": _to_http_urls,
    "srebuildd_ip": _optional(_to_host),
    "srebuildd_port": _to_positive_int,
    "srebuildd_arc_path": _optional(_to_str),
    "srebuildd_arcdata_path": _optional(_to_str),
    "srebuildd_chord_path": _optional(_to_str),
    "bucketd_url": _optional(_to_http_url),
    "split_threshold": _optional(_to_positive_int),
    "size_sample": _to_positive_int,
    "concurrency": _to_positive_int,
    "max_rps": _optional(_to_float),
    "max_rps_total": _optional(_to_float),
    "timeout": _to_float,
    "retries": _to_int,
    "cache_dir": _optional(_to_str),
    "reverse_lookup_command": _optional(_to_str),
    "reverse_lookup_node": _optional(_to_str),
    "reverse_lookup_ip": _optional(_to_str),
    "reverse_lookup_port": _optional(_to_positive_int),
    "reverse_lookup_timeout": _to_float,
}
_SECTIONS: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "s3": (
        S3Settings,
        {
            "endpoint": _optional(_to_str),
            "access_key": _optional(_to_str),
            "secret_key": _optional(_to_str),
            "session_token": _optional(_to_str),
            "region": _optional(_to_str),
            "profile": _optional(_to_str),
            "ca_bundle": _optional(_to_str),
            "verify_tls": _to_bool,
        },
    ),
    "sup": (
        SupSettings,
        {
            "url": _optional(_to_str),
            "login": _optional(_to_str),
            "password": _optional(_to_str),
            "ca_bundle": _optional(_to_str),
            "verify_tls": _to_bool,
        },
    ),
    "delete_budget": (DeleteBudget, {"keys": _optional(_to_positive_int), "bytes": _optional(parse_size)}),
    "canaries": (
        CanarySettings,
        {"sample": _to_int, "first_after": _to_positive_int, "every": _to_positive_int, "wait_seconds": _to_float},
    ),
    "duckdb": (
        DuckDBSettings,
        {"memory_limit": _optional(_to_str), "threads": _optional(_to_positive_int), "temp_directory": _optional(_to_str)},
    ),
}


def _convert(origin: str, key: str, convert: Callable[[Any], Any], value: Any) -> Any:
    try:
        return convert(value)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {key}: {exc}") from None


def _apply(values: dict[str, Any], raw: Mapping[str, Any], origin: str) -> None:
    """Validate ``raw`` (file, env or CLI layer) into ``values``; unknown keys are ignored."""
    for key, value in raw.items():
        if key in _TOP_LEVEL:
            if value is not None:
                values[key] = _convert(origin, key, _TOP_LEVEL[key], value)
        elif key in _SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{origin}: {key}: expected a mapping of settings, got {type(value).__name__}")
            _, fields = _SECTIONS[key]
            section = values.setdefault(key, {})
            for sub, subvalue in value.items():
                if sub in fields and subvalue is not None:
                    section[sub] = _convert(origin, f"{key}.{sub}", fields[sub], subvalue)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML config file; every problem is one ConfigError line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return dict(data)


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key in _TOP_LEVEL:
        name = ENV_PREFIX + key.upper()
        if name in env:
            layer[key] = env[name]
    for section, (_, fields) in _SECTIONS.items():
        for sub in fields:
            name = f"{ENV_PREFIX}{section.upper()}_{sub.upper()}"
            if name in env:
                layer.setdefault(section, {})[sub] = env[name]
    return layer


def load_settings(
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build the settings from the layers; ``overrides`` are command-line values (None = not given)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_path: Path | None = None
    if config is not None:
        config_path = Path(config)
    elif ENV_PREFIX + "CONFIG" in env:
        config_path = Path(env[ENV_PREFIX + "CONFIG"])
    else:
        candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
        if candidate.is_file():
            config_path = candidate
    if config_path is not None:
        _apply(values, read_config_file(config_path), str(config_path))
        values["config_file"] = str(config_path)
    _apply(values, _env_layer(env), "environment")
    if overrides:
        _apply(values, {k: v for k, v in overrides.items() if v is not None}, "command line")
    for section, (cls, _) in _SECTIONS.items():
        if section in values:
            values[section] = cls(**values[section])
    return Settings(**values)
