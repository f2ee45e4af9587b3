"""Shared CLI plumbing: error handling, the --config/--store options, output helpers.

``--config``, ``--store`` and ``--cache-dir`` are taken both before the subcommand
(``ringfsck --store X analyze``, as git, docker and aws take theirs) and after it.
Precedence: subcommand option > global option > ``RINGFSCK_*`` environment > config file > default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ringfsck.config import Settings, load_settings
from ringfsck.errors import EXIT_INTERRUPTED, RingfsckError


class RingfsckGroup(click.Group):
    """A click group that turns RingfsckError into one line on stderr and its exit code.

    Run without a subcommand, it prints its help and exits 0 (asking for help is no error).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RingfsckError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        finally:
            _unlock_all()


# The options every store command takes, as (parameter name, option decorator): given before the
# subcommand they are global; given after it, they win over the global ones.
_CONFIG_HELP = "YAML config file (default: ./ringfsck.yml if present; the reference's config.yml works; env RINGFSCK_CONFIG)."
_STORE_HELP = ("Where ringfsck keeps its tables and runs: a directory or an S3 prefix (env RINGFSCK_STORE; default ./ringfsck-store; "
               "with the reference's path and ring: PATH/RING). Example: --store s3://fsck/DATA")
_CACHE_DIR_HELP = ("Local mirror of a store on S3 (config: cache_dir, env RINGFSCK_CACHE_DIR; "
                   "default ~/.cache/ringfsck/s3/BUCKET/PREFIX). Example: --cache-dir /var/tmp/fsck-cache")
_STORE_OPTIONS: tuple[tuple[str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    ("config_file", click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help=_CONFIG_HELP)),
    ("store", click.option("--store", "store", default=None, metavar="DIR|s3://BUCKET/PREFIX", help=_STORE_HELP)),
    ("cache_dir", click.option("--cache-dir", "cache_dir", default=None, metavar="DIR", help=_CACHE_DIR_HELP)),
)
_GLOBAL_OPTIONS_KEY = "ringfsck.global_options"


def global_store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config``, ``--store`` and ``--cache-dir`` before the subcommand, kept for ``settings_options``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        click.get_current_context().meta[_GLOBAL_OPTIONS_KEY] = {name: kwargs.pop(name) for name, _ in _STORE_OPTIONS}
        return func(*args, **kwargs)

    for _, option in reversed(_STORE_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _with_global(name: str, value: Any) -> Any:
    """The subcommand's own value of a store option, else the one given before the subcommand."""
    if value is not None:
        return value
    return click.get_current_context().meta.get(_GLOBAL_OPTIONS_KEY, {}).get(name)


def settings_options(**setting_names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--config`` and ``--store`` and build ``settings`` from the config layers.

    ``setting_names`` maps a command's own option parameter names to setting names
    (e.g. ``arc="arc_protection"``): those options override the config file.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, config_file: str | None, store: str | None, cache_dir: str | None, **kwargs: Any) -> Any:
            overrides: dict[str, Any] = {"store": _with_global("store", store), "cache_dir": _with_global("cache_dir", cache_dir)}
            for param, setting in setting_names.items():
                overrides[setting] = kwargs.get(param)
            settings = load_settings(_with_global("config_file", config_file), overrides)
            return func(*args, settings=settings, **kwargs)

        for _, option in reversed(_STORE_OPTIONS):
            wrapper = option(wrapper)
        return wrapper

    return decorate


# The request policy options, shared by every network command (srebuildd and bucketd).
_POLICY_OPTIONS: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Requests in flight (config: concurrency, default 64)."),
    click.option("--max-rps", type=click.FloatRange(min=0.1), default=None,
                 help="Ceiling on requests per second, retries included (config: max_rps, default none)."),
    click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds before a request counts as failed (config: timeout, default 30)."),
    click.option("--retries", type=click.IntRange(min=0), default=None, help="Retries after a 5xx, timeout or dropped connection (config: retries, default 5)."),
)
_SREBUILDD_OPTION = click.option(
    "--srebuildd", "srebuildd_url", default=None, metavar="URL",
    help="srebuildd base URL, http://HOST:PORT or HOST:PORT, e.g. http://10.0.0.5:81 "
         "(config: srebuildd_url, or srebuildd_ip with srebuildd_port, default port 81).",
)


def policy_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the request policy options (their values reach ``settings`` through POLICY_SETTINGS)."""
    for option in reversed(_POLICY_OPTIONS):
        func = option(func)
    return func


def srebuildd_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--srebuildd and the request policy options, shared by every srebuildd command (with SREBUILDD_SETTINGS)."""
    return _SREBUILDD_OPTION(policy_options(func))


# The settings the request policy options set (settings_options(**POLICY_SETTINGS)).
POLICY_SETTINGS = dict(concurrency="concurrency", max_rps="max_rps", timeout="timeout", retries="retries")
# The settings srebuildd_options set (settings_options(**SREBUILDD_SETTINGS)).
SREBUILDD_SETTINGS = {"srebuildd_url": "srebuildd_url", **POLICY_SETTINGS}


# Stores this command locked for writing: released when it ends (RingfsckGroup.invoke).
_locked: list[Any] = []


def open_store(settings: Settings, *, writes: bool = True):  # noqa: ANN201 - avoids importing the store at CLI import time
    """The configured store; a command that changes it holds its writer lock until it ends."""
    from ringfsck.store import Store

    store = Store.open(settings)
    if writes:
        store.lock(click.get_current_context().command_path)
        _locked.append(store)
    return store


def _unlock_all() -> None:
    while _locked:
        _locked.pop().unlock()
