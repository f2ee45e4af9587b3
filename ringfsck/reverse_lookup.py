"""``ringfsck verify``: reverse lookups of a manifest's keys on a node (docs/domain.md section 10).

A configured command (``reverse_lookup_command``, e.g.
``ssh {node} scalarcrevlookupid -b {ip}:{port} {key}``) is run for each main
chunk of a sample, without a shell: the template is split with shlex, then each
argument's placeholders are filled (``{key}``, ``{node}``, ``{ip}``, ``{port}``).
Its output format is not documented, so it is read conservatively: exactly one
40-hex token other than the queried key is the input key found; anything else
(no token, several, a non-zero exit, a timeout) is *unverified*, never verified.

A found input key that S3 references (as the analysis matches references: its
digkey, or the key itself among the S3 input keys and subkeys) proves the
analysis wrong for that key: the manifest is refused, here and by ``delete``.
Results land in ``STORE/verify/<manifest checksum>/<batch>.jsonl``.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ringfsck.config import Settings
from ringfsck.errors import ConfigError, RefusedError
from ringfsck.manifest import Manifest, read_manifest, verify_against_store
from ringfsck.s3 import local_input
from ringfsck.steps import step_sql
from ringfsck.store import Store, iso, utc_now

_HEX40 = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")
_PLACEHOLDERS = ("key", "node", "ip", "port")
VERIFIED, REFERENCED, UNVERIFIED = "verified", "referenced", "unverified"


@dataclass
class VerifyReport:
    asked: int
    outcomes: Counter[str] = field(default_factory=Counter)
    referenced: list[tuple[str, str]] = field(default_factory=list)  # (main chunk, input key S3 references)
    first_unverified: list[str] = field(default_factory=list)
    results: Path | None = None


def command_for(settings: Settings, key: str) -> list[str]:
    """The reverse-lookup command for one key, as an argument list (no shell ever sees it)."""
    template = settings.reverse_lookup_command
    if not template:
        raise ConfigError("no reverse_lookup_command configured (e.g. 'ssh {node} scalarcrevlookupid -b {ip}:{port} {key}')")
    values = {
        "key": key,
        "node": settings.reverse_lookup_node,
        "ip": settings.reverse_lookup_ip,
        "port": None if settings.reverse_lookup_port is None else str(settings.reverse_lookup_port),
    }
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ConfigError(f"reverse_lookup_command: {exc}") from None
    argv = []
    for word in words:
        for name in re.findall(r"\{([^{}]*)\}", word):
            if name not in _PLACEHOLDERS:
                raise ConfigError(f"reverse_lookup_command: unknown placeholder {{{name}}} (known: {', '.join(_PLACEHOLDERS)})")
            if values[name] is None:
                raise ConfigError(f"reverse_lookup_command uses {{{name}}}: set reverse_lookup_{name}")
        argv.append(re.sub(r"\{(key|node|ip|port)\}", lambda m: str(values[m.group(1)]), word))
    return argv


def found_input_key(output: str, queried: str) -> str | None:
    """The one 40-hex token of ``output`` other than the queried key; None when there is not exactly one."""
    tokens = {token.upper() for token in _HEX40.findall(output)} - {queried.upper()}
    return tokens.pop() if len(tokens) == 1 else None


def lookup(settings: Settings, key: str) -> tuple[str | None, str | None]:
    """(input key found, None) or (None, why it is unverified)."""
    argv = command_for(settings, key)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=settings.reverse_lookup_timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {settings.reverse_lookup_timeout:g} s"
    except OSError as exc:
        return None, f"cannot run {argv[0]}: {exc.strerror}"
    if done.returncode != 0:
        return None, f"exit status {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}"
    found = found_input_key(done.stdout, key)
    if found is None:
        return None, f"output not understood (expected one 40-hex input key): {done.stdout.strip()[:200]!r}"
    return found, None


def _referenced_by_s3(store: Store, run_id: str, found: dict[str, str]) -> dict[str, str]:
    """Of {main chunk: input key found}, those whose input key S3 references, matched as the analysis matches."""
    if not found:
        return {}
    con = store.connect(run_id=run_id)
    try:
        con.register("found", pa.table({"ring_key": list(found), "input_key": list(found.values())}))
        con.execute(f"CREATE TEMP TABLE s3_references AS {step_sql('s3_references')}")
        rows = con.execute(
            "SELECT f.ring_key, f.input_key FROM found AS f WHERE EXISTS (SELECT 1 FROM s3_references AS r "
            "WHERE r.sproxyd_key = f.input_key OR r.digkey = input_key_digkey(f.input_key)) ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def verify_dir(store: Store, manifest: Manifest) -> Path:
    return store.root / "verify" / manifest.header["keys_sha256"][:32]


def refuse_if_disproved(store: Store, manifest: Manifest) -> None:
    """Refuse a manifest one of whose keys a reverse lookup traced to an input key S3 references."""
    directory = verify_dir(store, manifest)
    for file in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("status") == REFERENCED:
                raise RefusedError(
                    f"{manifest.path}: reverse lookup found {record['ring_key']} written by input key "
                    f"{record['input_key']}, which S3 references: the analysis is wrong for it; nothing is deleted"
                )


def verify_manifest(store: Store, manifest_path: str | Path, *, sample: int | None = None, seed: int | None = None) -> VerifyReport:
    """Reverse-look-up ``sample`` keys of the manifest (all when None); refuse it if one is referenced by S3."""
    with local_input(manifest_path, store.settings) as local:
        manifest = read_manifest(local, location=str(manifest_path))
    verify_against_store(manifest, store)
    command_for(store.settings, "0" * 40)  # a bad template fails before anything runs
    keys = manifest.keys if sample is None or sample >= len(manifest.keys) else sorted(random.Random(seed).sample(manifest.keys, sample))
    report = VerifyReport(len(keys))
    records: list[dict[str, Any]] = []
    found: dict[str, str] = {}
    for key in keys:
        input_key, why = lookup(store.settings, key)
        if input_key is not None:
            found[key] = input_key
        records.append({"ring_key": key, "input_key": input_key, "error": why, "at": iso(utc_now())})
    referenced = _referenced_by_s3(store, manifest.header["run_id"], found)
    for record in records:
        record["status"] = REFERENCED if record["ring_key"] in referenced else VERIFIED if record["input_key"] else UNVERIFIED
        report.outcomes[record["status"]] += 1
        if record["status"] == UNVERIFIED and len(report.first_unverified) < 5:
            report.first_unverified.append(f"{record['ring_key']}: {record['error']}")
    report.referenced = sorted(referenced.items())
    directory = verify_dir(store, manifest)
    directory.mkdir(parents=True, exist_ok=True)
    report.results = directory / f"{store.new_batch_id()}.jsonl"
    store.write_text(report.results, "".join(json.dumps(r) + "\n" for r in records))
    refuse_if_disproved(store, manifest)
    return report
