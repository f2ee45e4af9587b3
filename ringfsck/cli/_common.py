"""Shared CLI plumbing: error handling, the --config/--store options, output helpers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ringfsck.config import Settings, load_settings
from ringfsck.errors import EXIT_INTERRUPTED, RingfsckError


class RingfsckGroup(click.Group):
    """A click group that turns RingfsckError into one line on stderr and its exit code."""

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


def settings_options(**setting_names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--config`` and ``--store`` and build ``settings`` from the config layers.

    ``setting_names`` maps a command's own option parameter names to setting names
    (e.g. ``arc="arc_protection"``): those options override the config file.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                      help="YAML config file (default: ./ringfsck.yml if present; the reference's config.yml works).")
        @click.option("--store", "store", default=None, metavar="DIR|s3://BUCKET/PREFIX",
                      help="Where ringfsck keeps its tables and runs: a directory or an S3 prefix (default ./ringfsck-store; "
                           "with the reference's path and ring: PATH/RING). Example: --store s3://fsck/DATA")
        @click.option("--cache-dir", "cache_dir", default=None, metavar="DIR",
                      help="Local mirror of a store on S3 (config: cache_dir, env RINGFSCK_CACHE_DIR; "
                           "default ~/.cache/ringfsck/s3/BUCKET/PREFIX). Example: --cache-dir /var/tmp/fsck-cache")
        @functools.wraps(func)
        def wrapper(*args: Any, config_file: str | None, store: str | None, cache_dir: str | None, **kwargs: Any) -> Any:
            overrides: dict[str, Any] = {"store": store, "cache_dir": cache_dir}
            for param, setting in setting_names.items():
                overrides[setting] = kwargs.get(param)
            settings = load_settings(config_file, overrides)
            return func(*args, settings=settings, **kwargs)

        return wrapper

    return decorate


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
