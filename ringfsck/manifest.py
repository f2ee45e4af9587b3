"""Deletion manifests: the orphans of one complete analysis, tied to its inputs.

A manifest is a CSV file whose first line is ``# ringfsck-manifest {json}``
(the header record), then ``ring_key,protection,schema,chunks,size`` rows sorted
by key; a Parquet copy with the header in its key-value metadata sits beside it
(``FILE.parquet``); both may be ``s3://`` objects. The header names the store,
the run, the inputs' fingerprint, the settings and the sha256 of the key list,
so the deleter can refuse a manifest that was edited or that belongs to another
store or run. A checksum proves nothing about safety (anyone can recompute it):
before deleting, :func:`verify_against_store` also checks that every key is a
reclaimable orphan of that run and matches no reference the store holds now.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck import __version__
from ringfsck.errors import ConfigError, InputError, RefusedError
from ringfsck.keys import is_valid_key
from ringfsck.s3 import local_output
from ringfsck.store import Store, iso, utc_now

MANIFEST_FORMAT = 1
HEADER_PREFIX = "# ringfsck-manifest "
COLUMNS = ("ring_key", "protection", "schema", "chunks", "size")
# Checks --force may override: their risk is bounded and visible. An incomplete analysis is not
# among them: its unknown references could be any candidate, and nothing makes them deletable.
CHECKS = ("orphan-share", "listing-order")
INCOMPLETE = "incomplete"


@dataclass
class Manifest:
    path: str  # where it was read or written: a local path or an s3:// URL
    header: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def keys(self) -> list[str]:
        return [row["ring_key"] for row in self.rows]


def keys_checksum(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def _refuse_incomplete(summary: dict[str, Any], what: str) -> None:
    if not summary["complete"] or not summary.get("reclaimable", False):
        raise RefusedError(
            f"{what}: analysis run {summary['run_id']} is incomplete, and no option overrides that: "
            + "; ".join(summary["incomplete_reasons"] or ["it predates the reclaimable check: run 'ringfsck analyze' again"])
        )


def _refusals(summary: dict[str, Any], max_share: float) -> dict[str, str]:
    """Every overridable safety check the analysis fails, by the name --force takes."""
    found: dict[str, str] = {}
    if summary["orphan_share"] > max_share:
        found["orphan-share"] = (
            f"orphans are {summary['orphan_share']:.1%} of candidates, above the {max_share:.0%} limit "
            "(a wrong protection setting or a missing S3 export is more likely than real orphans)"
        )
    listing, export = summary.get("listing_captured"), summary.get("export_captured")
    if listing and export and listing[1] > export[0]:
        found["listing-order"] = (
            f"the RING listing ({listing[1]}) is newer than the start of the S3 export ({export[0]}): "
            "keys written in between would look orphaned"
        )
    return found


def write_manifest(store: Store, path: str | Path, *, force: tuple[str, ...] | list[str] = ()) -> Manifest:
    """Write the manifest of the latest analysis, or refuse with the first failed check."""
    if INCOMPLETE in force:
        raise ConfigError(
            "--force incomplete no longer exists: an incomplete analysis never gives a manifest (complete its inputs and analyze again)"
        )
    unknown = set(force) - set(CHECKS)
    if unknown:
        raise ConfigError(f"--force takes {', '.join(CHECKS)}; not {', '.join(sorted(unknown))}")
    summary = store.run_summary()
    _refuse_incomplete(summary, "no manifest")
    refusals = _refusals(summary, store.settings.max_orphan_share)
    blocking = {name: reason for name, reason in refusals.items() if name not in force}
    if blocking:
        name, reason = next(iter(blocking.items()))
        raise RefusedError(f"no manifest: {reason} (override with --force {name} only if you are sure)")
    con = store.connect(run_id=summary["run_id"])
    result = con.execute(
        # Logical bytes as the run's X-Scal-Size reading gives them (orphan_sizes), not the raw header.
        "SELECT o.ring_key, o.protection, o.schema, o.chunks, CAST(s.size AS BIGINT) FROM orphans AS o LEFT JOIN orphan_sizes AS s "
        "ON s.ring_key = o.ring_key AND s.status = 'ok' ORDER BY o.ring_key"
    )
    rows = [dict(zip(COLUMNS, row)) for row in result.fetchall()]
    keys = [row["ring_key"] for row in rows]
    header = {
        "format": MANIFEST_FORMAT,
        "ringfsck_version": __version__,
        "store_id": store.store_id,
        "run_id": summary["run_id"],
        "inputs_fingerprint": summary["inputs_fingerprint"],
        "settings": summary["settings"],
        "key_count": len(keys),
        "keys_sha256": keys_checksum(keys),
        "unsized": sum(1 for row in rows if row["size"] is None),
        "logical_bytes": sum(row["size"] or 0 for row in rows),
        "forced": {name: refusals[name] for name in force if name in refusals},
        "created_at": iso(utc_now()),
    }
    # On S3 the Parquet copy is uploaded first, the CSV (what delete reads) last.
    with local_output(path, store.settings) as csv_path, local_output(f"{path}.parquet", store.settings) as parquet_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            handle.write(HEADER_PREFIX + json.dumps(header, sort_keys=True) + "\n")
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        table = pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("ring_key", pa.string()),
                    ("protection", pa.string()),
                    ("schema", pa.string()),
                    ("chunks", pa.int64()),
                    ("size", pa.int64()),
                ]
            ),
        )
        table = table.replace_schema_metadata({"ringfsck-manifest": json.dumps(header, sort_keys=True)})
        pq.write_table(table, parquet_path)
    return Manifest(str(path), header, rows)


def read_manifest(path: str | Path, *, location: str | None = None) -> Manifest:
    """Read a CSV manifest and verify it was not modified (count and checksum of its keys).

    ``location`` names it in messages when ``path`` is a local copy (of an S3 object).
    """
    path = Path(path)
    where = location or str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{where}: cannot read manifest: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RefusedError(f"{where}: not a ringfsck manifest (give the CSV file, not its Parquet copy)") from None
    if not lines or not lines[0].startswith(HEADER_PREFIX):
        raise RefusedError(f"{where}: not a ringfsck manifest (no header record)")
    try:
        header = json.loads(lines[0][len(HEADER_PREFIX) :])
    except ValueError:
        raise RefusedError(f"{where}: the manifest header is damaged") from None
    rows: list[dict[str, Any]] = []
    for number, row in enumerate(csv.DictReader(lines[1:]), start=3):
        key = (row.get("ring_key") or "").strip()
        if not is_valid_key(key):
            raise RefusedError(f"{where}:{number}: {key!r} is not a RING key")
        size = row.get("size") or ""
        rows.append(
            {
                "ring_key": key.upper(),
                "protection": row.get("protection"),
                "schema": row.get("schema"),
                "chunks": int(row["chunks"]) if row.get("chunks") else None,
                "size": int(size) if size.isdigit() else None,
            }
        )
    keys: list[str] = [row["ring_key"] for row in rows]
    if len(keys) != header.get("key_count") or keys_checksum(keys) != header.get("keys_sha256") or len(set(keys)) != len(keys):
        raise RefusedError(f"{where}: the key list does not match the manifest's checksum: it was modified after ringfsck wrote it")
    return Manifest(where, header, rows)


def verify_against_store(manifest: Manifest, store: Store) -> None:
    """Refuse a manifest unless every key in it is, in this store, a reclaimable orphan of its run.

    A manifest is a request, not an authority: its checksum only shows it was not edited by
    accident. So the store decides: the run must be complete (with only overridable checks
    forced), its inputs unchanged, every key one of its orphans, no key matched by a reference
    the store holds now (split lookups made since included), and the store's references complete.
    """
    header = manifest.header
    if header.get("store_id") != store.store_id:
        raise RefusedError(f"{manifest.path}: written for another store ({header.get('store_id')}), not {store.location}")
    try:
        summary = store.run_summary(header.get("run_id"))
    except InputError:
        raise RefusedError(f"{manifest.path}: its analysis run {header.get('run_id')} is not in {store.location}") from None
    if summary.get("inputs_fingerprint") != header.get("inputs_fingerprint"):
        raise RefusedError(f"{manifest.path}: the inputs of run {header.get('run_id')} no longer match the manifest")
    _refuse_incomplete(summary, f"{manifest.path}")
    forced = set(header.get("forced") or {}) - set(CHECKS)
    if forced:
        raise RefusedError(f"{manifest.path}: it overrides {', '.join(sorted(forced))}, which no manifest may override")
    _verify_keys(manifest, store, summary)


def _verify_keys(manifest: Manifest, store: Store, summary: dict[str, Any]) -> None:
    from ringfsck.analysis import AnalysisOptions, check_completeness
    from ringfsck.steps import step_sql

    con = store.connect(run_id=summary["run_id"])
    try:
        con.register("manifest_keys", pa.table({"ring_key": pa.array(manifest.keys, pa.string())}))
        stranger = con.execute(
            "SELECT m.ring_key FROM manifest_keys AS m ANTI JOIN (SELECT ring_key FROM orphans WHERE reclaimable) AS o USING (ring_key) "
            "ORDER BY 1 LIMIT 1"
        ).fetchone()
        if stranger:
            raise RefusedError(
                f"{manifest.path}: {stranger[0]} is not a reclaimable orphan of run {summary['run_id']}; nothing else is ever deleted"
            )
        # The references as the store holds them now: a split index resolved after the analysis counts.
        con.execute(f"CREATE TEMP TABLE s3_references AS {step_sql('s3_references')}")
        referenced = con.execute(
            "SELECT m.ring_key, r.sproxyd_key, r.bucket, r.object_key FROM manifest_keys AS m "
            "JOIN s3_references AS r ON r.digkey = left(m.ring_key, 26) ORDER BY 1 LIMIT 1"
        ).fetchone()
        if referenced:
            key, sproxyd_key, bucket, name = referenced
            whose = f" (object {bucket}/{name!r})" if bucket is not None else ""
            raise RefusedError(f"{manifest.path}: {key} is the main chunk of S3 reference {sproxyd_key}{whose}: refusing to delete it")
        state = check_completeness(
            con, store, store.settings, AnalysisOptions(assume_no_splits=bool(summary["settings"].get("assume_no_splits")))
        )
        if state.incomplete:
            raise RefusedError(f"{manifest.path}: the store's references are incomplete now: " + "; ".join(state.incomplete))
    finally:
        con.close()
