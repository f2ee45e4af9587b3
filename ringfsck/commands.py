"""Commands ringfsck prints for the operator to run next: each runs as printed, from any folder.

A printed command carries what it needs that the current folder gave this run: the store as an
absolute path (or its ``s3://`` prefix), the config file as an absolute path, and the srebuildd
URL when it is known (from the settings, else the one ``resolve`` or ``size`` last used on this
store; none when the store's native RING listing gives the endpoints: the command finds them
again). Credentials are never printed: a URL loses its ``user:password@`` part, and S3
credentials stay in the config file or the environment they came from.
"""

from __future__ import annotations

import json
import os
import shlex

from ringfsck.config import load_settings
from ringfsck.redact import redact
from ringfsck.s3 import is_s3_url
from ringfsck.store import Store

# Where the store remembers the srebuildd URL its lookups used (without credentials).
SREBUILDD_FILE = "srebuildd.json"
# Printed when no URL is known: the operator fills it in (as printed, it is a usage error, exit 2).
UNKNOWN_SREBUILDD = "<SREBUILDD_URL>"


def absolute_location(location: str) -> str:
    """A store, manifest or report location that means the same from any folder."""
    return location if is_s3_url(location) else os.path.abspath(os.path.expanduser(location))


def remember_srebuildd(store: Store, url: str) -> None:
    """Record the srebuildd URL a lookup used, so the next steps printed later can name it."""
    path = store.root / SREBUILDD_FILE
    url = redact(url.rstrip("/"))
    if known_srebuildd(store, from_settings=False) != url:
        store.write_json(path, {"url": url})


def known_srebuildd(store: Store, *, from_settings: bool = True) -> str | None:
    """The srebuildd URL of this store: the settings' own, else the one its lookups last used."""
    if from_settings and store.settings.srebuildd_base_url:
        return redact(store.settings.srebuildd_base_url)
    path = store.root / SREBUILDD_FILE
    try:
        return json.loads(path.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _listing_names_srebuildd(store: Store) -> bool:
    """Whether the store's RING listing gives the srebuildd endpoints of a command run without any (ringfsck.config)."""
    from ringfsck.config import srebuildd_endpoints
    from ringfsck.ingest.ring import listing_node_ips  # the listing's modules are imported when needed

    return bool(srebuildd_endpoints(store.settings, listing_node_ips(store)).urls)


def location_options(store: Store) -> list[str]:
    """``--config ABSOLUTE`` when a config file was read, and ``--store ABSOLUTE`` unless that config alone names it."""
    store_location = absolute_location(store.location)
    config_file = store.settings.config_file
    if not config_file:
        return ["--store", store_location]
    config_file = os.path.abspath(config_file)
    options = ["--config", config_file]
    from_config = load_settings(config_file, env={}).store_location
    if absolute_location(from_config) != from_config or absolute_location(from_config) != store_location:
        options += ["--store", store_location]  # the store came from elsewhere, or the config names it relatively
    return options


def printed_command(store: Store, *words: str, srebuildd: bool = False) -> str:
    """``ringfsck WORDS…`` with the options that make it run from any folder, quoted for a shell."""
    options = location_options(store)
    url = known_srebuildd(store) if srebuildd else None
    if url and not (store.settings.config_file and store.settings.srebuildd_base_url):
        options += ["--srebuildd", url]  # the config file, when it has the URL, already carries it
    elif srebuildd and not url and not _listing_names_srebuildd(store):
        options += ["--srebuildd", UNKNOWN_SREBUILDD]  # with a native listing, the command finds srebuildd on its nodes
    return redact(shlex.join(["ringfsck", *words, *options]))  # whatever URL a word holds
