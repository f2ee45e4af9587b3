"""Shared CLI plumbing: error handling, the --config/--store options, output helpers.

``--config``, ``--store`` and ``--cache-dir`` are taken both before the subcommand
(``ringfsck --store X analyze``, as git, docker and aws take theirs) and after it.
Precedence: subcommand option > global option > ``RINGFSCK_*`` environment > config file > default.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ringfsck.config import Settings, load_settings
from ringfsck.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, RingfsckError, Terminated, no_space_error
from ringfsck.redact import redact


class RingfsckGroup(click.Group):
    """A click group that turns RingfsckError into one line on stderr and its exit code.

    Run without a subcommand, it prints its help and exits 0 (asking for help is no error).
    A full disk is one line too (exit 6), and SIGTERM stops a command the way Ctrl-C does (exit 143).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _sigterm_as_interrupt():
            try:
                return super().invoke(ctx)
            except RingfsckError as exc:
                _fail(ctx, str(exc), exc.exit_code)
            except KeyboardInterrupt as exc:
                terminated = isinstance(exc, Terminated) or _terminated.is_set()
                click.echo(f"{'Terminated' if terminated else 'Interrupted'}: {_what_was_saved(ctx)}", err=True)
                ctx.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
            except Exception as exc:
                full = no_space_error(exc, _stores[-1].location if _stores else os.getcwd())
                if full is None:
                    raise  # a bug: the traceback is what a developer needs
                _fail(ctx, str(full), full.exit_code)
            finally:
                _unlock_all()


def _fail(ctx: click.Context, message: str, exit_code: int) -> None:
    click.echo(f"Error: {redact(message)}", err=True)
    ctx.exit(exit_code)


# What an interrupted command has saved, and how it resumes (every command persists as it goes).
_RESUME = {
    "ingest": "every input ingested before the interrupt is recorded; run the same command again and only the others are read",
    "ingest bucketd": "each bucket's completed pages are saved; run the same command again and it resumes from them",
    "resolve": "the answers received are saved; run the same command again and it asks only the keys still unanswered",
    "size": "the sizes received are saved; run the same command again and it asks only the orphans still unsized",
    "analyze": "nothing: an analysis is published whole or not at all (the previous one stays the latest); run it again",
    "check": "every input ingested before the interrupt is recorded, no analysis was published; run the same command again",
    "delete": "every deletion outcome received is journaled; run the same command again and it skips the confirmed keys",
}


def _what_was_saved(ctx: click.Context) -> str:
    names = [ctx.invoked_subcommand or ""]
    while ctx.parent is not None:  # the program's own name (ringfsck, python -m ringfsck) aside
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    command = " ".join(names).strip()
    saved = _RESUME.get(command) or _RESUME.get(command.split(" ")[0]) or "nothing was changed; run the command again"
    where = f" (store {_stores[-1].location})" if _stores else ""
    return saved + where


# Set by SIGTERM: the KeyboardInterrupt that follows is reported as a termination (exit 143).
_terminated = threading.Event()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM does what Ctrl-C does: the same clean stop, the lock released, progress kept."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is _on_sigterm:
        yield  # a nested group (ringfsck ingest …), or a command run from a thread: the handler is the outer one's
        return
    _terminated.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: Any) -> None:
    _terminated.set()
    # Forked ingest workers stop as they do on Ctrl-C (the terminal sends it to them too).
    for child in multiprocessing.active_children():
        if child.pid is not None:
            os.kill(child.pid, signal.SIGINT)
    interrupt = signal.getsignal(signal.SIGINT)
    if callable(interrupt) and interrupt is not signal.default_int_handler:
        interrupt(signal.SIGINT, frame)  # asyncio's: cancels the running requests, then raises KeyboardInterrupt
        return
    raise Terminated


# The options every store command takes, as (parameter name, option decorator): given before the
# subcommand they are global; given after it, they win over the global ones.
_CONFIG_HELP = "YAML config file (default: ./ringfsck.yml if present; the reference's config.yml works; env RINGFSCK_CONFIG)."
_STORE_HELP = (
    "Where ringfsck keeps its tables and runs: a directory or an S3 prefix (env RINGFSCK_STORE; default ./ringfsck-store; "
    "with the reference's path and ring: PATH/RING). Example: --store s3://fsck/DATA"
)
_CACHE_DIR_HELP = (
    "Local mirror of a store on S3 (config: cache_dir, env RINGFSCK_CACHE_DIR; "
    "default ~/.cache/ringfsck/s3/BUCKET/PREFIX). Example: --cache-dir /var/tmp/fsck-cache"
)
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
    click.option(
        "--max-rps",
        type=click.FloatRange(min=0.1),
        default=None,
        help="Ceiling on requests per second, retries included (config: max_rps, default none).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=None,
        help="Seconds before a request counts as failed (config: timeout, default 30).",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=None,
        help="Retries after a 5xx, timeout or dropped connection (config: retries, default 5).",
    ),
)
_SREBUILDD_OPTIONS: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option(
        "--srebuildd",
        "srebuildd_urls",
        multiple=True,
        metavar="URL",
        callback=lambda ctx, param, value: value or None,  # None: not given, the config decides
        help="srebuildd base URL, http://HOST:PORT or HOST:PORT, e.g. http://10.0.0.5:81; repeat it to spread the keys "
        "over several (config: srebuildd_urls, srebuildd_url, or srebuildd_ip with srebuildd_port, default port 81).",
    ),
    click.option(
        "--max-rps-total",
        type=click.FloatRange(min=0.1),
        default=None,
        help="Ceiling on requests per second over all the srebuildd endpoints; --max-rps is per endpoint (config: max_rps_total).",
    ),
)


def policy_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the request policy options (their values reach ``settings`` through POLICY_SETTINGS)."""
    for option in reversed(_POLICY_OPTIONS):
        func = option(func)
    return func


def srebuildd_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--srebuildd and the request policy options, shared by every srebuildd command (with SREBUILDD_SETTINGS)."""
    for option in reversed(_SREBUILDD_OPTIONS):
        func = option(func)
    return policy_options(func)


# The settings the request policy options set (settings_options(**POLICY_SETTINGS)).
POLICY_SETTINGS = dict(concurrency="concurrency", max_rps="max_rps", timeout="timeout", retries="retries")
# The settings srebuildd_options set (settings_options(**SREBUILDD_SETTINGS)).
SREBUILDD_SETTINGS = {"srebuildd_urls": "srebuildd_urls", "max_rps_total": "max_rps_total", **POLICY_SETTINGS}


def srebuildd_endpoints_of(store) -> list[str] | None:  # store: Store (not imported at CLI import time)
    """The srebuildd endpoints of a command (``ringfsck.config.srebuildd_endpoints``), said in one line when they come
    from the RING listing's nodes; None when nothing names one (the command then says how to)."""
    from ringfsck.config import srebuildd_endpoints
    from ringfsck.ingest.ring import listing_node_ips

    endpoints = srebuildd_endpoints(store.settings, listing_node_ips(store))
    if endpoints.note:
        click.echo(endpoints.note)
    return endpoints.urls or None


# Stores this command opened (named in its error and interrupt messages); their writer locks are
# released when it ends (RingfsckGroup.invoke).
_stores: list[Any] = []


def open_store(settings: Settings, *, writes: bool = True):  # -> Store: not imported at CLI import time
    """The configured store; a command that changes it holds its writer lock until it ends.

    A command that only reads (``writes=False``) never creates a store nor writes into one: a
    mistyped ``--store`` is "no store at …" (exit 3).
    """
    from ringfsck.store import Store

    store = Store.open(settings, create=writes)
    _stores.append(store)
    if writes:
        store.lock(click.get_current_context().command_path)
    return store


def _unlock_all() -> None:
    while _stores:
        _stores.pop().unlock()
