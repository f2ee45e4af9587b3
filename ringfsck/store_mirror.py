"""A store on S3, worked on through a local mirror (the cache directory).

DuckDB reads local files fast and needs no extension for them, so a store at
``s3://bucket/prefix`` is spooled to a local directory and every ringfsck step
works there; this module keeps the two in step:

* **S3 is the truth.** Opening the store pulls its own files (``store.json``,
  ``sources.json``, ``tables/``, ``runs/``, ``bucketd/``, ``journal/``; never the
  inputs that live beside them, such as ``listkeys.csv/``), skipping every file
  whose size and ETag match what the mirror already holds. The outputs of an
  analysis run are pulled only when that run is used.
* **A write counts once it is on S3.** Each file the store publishes (after its
  local atomic write) is uploaded at once with one PUT, which S3 makes visible
  whole or not at all; a removed part is deleted on S3 too. A local file that
  never reached S3 (a crash in between) is dropped at the next open, except a
  deletion-journal segment: its outcomes really happened, so it is uploaded.
* The mirror remembers what it pulled or pushed in ``.ringfsck-mirror.jsonl``
  (size, ETag and local mtime per file), so a file changed on either side is
  fetched again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ringfsck.config import Settings
from ringfsck.errors import ConfigError
from ringfsck.s3 import S3, S3Object, S3Url

# The store's own names under its prefix; anything else there (the inputs) is left alone.
OWNED = ("store.json", "sources.json", "srebuildd.json", "tables/", "runs/", "bucketd/", "journal/")
INDEX_NAME = ".ringfsck-mirror.jsonl"
CACHE_ENV = "RINGFSCK_CACHE_DIR"


@dataclass(frozen=True)
class _Entry:
    size: int
    etag: str
    mtime_ns: int


def default_cache_dir(url: S3Url) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ringfsck" / "s3" / url.bucket / url.key


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def _is_run_output(relative: str) -> bool:
    parts = relative.split("/")
    return parts[0] == "runs" and len(parts) == 3 and parts[2] != "summary.json"


class S3Mirror:
    """Keeps a local directory and an S3 prefix holding the same store."""

    def __init__(self, s3: S3, url: S3Url, root: Path) -> None:
        self.s3 = s3
        self.url = url
        self.root = root
        self._index: dict[str, _Entry] = {}
        self._pulled_runs: set[str] = set()

    @classmethod
    def open(cls, location: str, settings: Settings) -> S3Mirror:
        """Mirror the store at ``location`` (``s3://bucket/prefix``) and pull it."""
        parsed = S3Url.parse(location)
        url = S3Url(parsed.bucket, parsed.key.strip("/"))
        root = Path(settings.cache_dir).expanduser() if settings.cache_dir else default_cache_dir(url)
        mirror = cls(S3(settings), url, root)
        mirror._load_index()
        mirror.pull()
        return mirror

    def __str__(self) -> str:
        return str(self.url).rstrip("/")

    # --- locations --------------------------------------------------------
    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def url_of(self, path: Path) -> S3Url:
        return self.url.join(self._relative(path))

    def _remote_relative(self, obj: S3Object) -> str:
        base = f"{self.url.key}/" if self.url.key else ""
        return obj.url.key[len(base) :]

    # --- the index --------------------------------------------------------
    @property
    def _index_file(self) -> Path:
        return self.root / INDEX_NAME

    def _load_index(self) -> None:
        if not self._index_file.exists():
            if (self.root / "store.json").exists() or (self.root / "tables").exists():
                raise ConfigError(f"{self.root}: holds a ringfsck store that is not a mirror of {self}; give an empty --cache-dir")
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_index()
            return
        lines = self._index_file.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("remote") != str(self):
            raise ConfigError(f"{self.root}: is the cache of {header.get('remote')}, not of {self}; give another --cache-dir")
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:  # a torn last line after a crash: that file is fetched again
                continue
            if record.get("gone"):
                self._index.pop(record["path"], None)
            else:
                self._index[record["path"]] = _Entry(record["size"], record["etag"], record["mtime_ns"])

    def _write_index(self) -> None:
        lines = [json.dumps({"remote": str(self)})]
        lines += [json.dumps({"path": rel, **vars(entry)}) for rel, entry in sorted(self._index.items())]
        tmp = self._index_file.with_name(self._index_file.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self._index_file)

    def _record(self, relative: str, entry: _Entry | None) -> None:
        if entry is None:
            self._index.pop(relative, None)
            record = {"path": relative, "gone": True}
        else:
            self._index[relative] = entry
            record = {"path": relative, **vars(entry)}
        with open(self._index_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _fresh(self, relative: str, obj: S3Object, path: Path) -> bool:
        entry = self._index.get(relative)
        if entry is None or entry.etag != obj.etag or entry.size != obj.size:
            return False
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        return stat.st_size == entry.size and stat.st_mtime_ns == entry.mtime_ns

    # --- pulling ----------------------------------------------------------
    def pull(self) -> None:
        """Bring the mirror in step with S3 (the outputs of analysis runs only on demand)."""
        self._sync(OWNED, want=lambda rel: not _is_run_output(rel))
        self._write_index()

    def pull_run(self, run_id: str) -> None:
        """Make sure every output of one analysis run is in the mirror."""
        if run_id in self._pulled_runs:
            return
        self._sync((f"runs/{run_id}/",), want=lambda rel: True)
        self._pulled_runs.add(run_id)

    def _sync(self, names: tuple[str, ...], want: Callable[[str], bool]) -> None:
        remote: dict[str, S3Object] = {}
        for name in names:
            for obj in self.s3.list(self.url.join(name)):
                relative = self._remote_relative(obj)
                if (
                    (relative == name or (name.endswith("/") and relative.startswith(name)))
                    and not _hidden(relative)
                    and not relative.endswith("/")
                ):
                    remote[relative] = obj
        for relative, obj in remote.items():
            path = self.root / relative
            if want(relative) and not self._fresh(relative, obj, path):
                self.s3.download(obj, path)
                self._record(relative, _Entry(obj.size, obj.etag, path.stat().st_mtime_ns))
        for path in self._local_files(names):
            relative = self._relative(path)
            if relative in remote:
                continue
            if relative in self._index or not relative.startswith("journal/"):
                # Removed on S3 since it was pulled, or never published: S3 is the truth.
                path.unlink()
                self._record(relative, None)
            else:
                # A journal segment written before a crash, not uploaded yet: its outcomes happened.
                self.publish(path)

    def _local_files(self, names: tuple[str, ...]) -> Iterator[Path]:
        for name in names:
            top = self.root / name.rstrip("/")
            candidates = sorted(p for p in top.rglob("*") if p.is_file()) if name.endswith("/") and top.is_dir() else [top]
            for path in candidates:
                if path.is_file() and not _hidden(self._relative(path)):
                    yield path

    # --- pushing ----------------------------------------------------------
    def publish(self, path: Path) -> None:
        """Upload a file the store has just written (atomically) under its root."""
        etag = self.s3.upload(path, self.url_of(path))
        stat = path.stat()
        self._record(self._relative(path), _Entry(stat.st_size, etag, stat.st_mtime_ns))

    def publish_tree(self, directory: Path) -> None:
        """Upload every file under ``directory`` that S3 does not hold in this version yet."""
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            relative = self._relative(path)
            if _hidden(relative):
                continue
            entry = self._index.get(relative)
            stat = path.stat()
            if entry is None or entry.size != stat.st_size or entry.mtime_ns != stat.st_mtime_ns:
                self.publish(path)

    def remove(self, path: Path) -> None:
        """Delete on S3 a file the store has just removed locally."""
        self.s3.delete(self.url_of(path))
        self._record(self._relative(path), None)

    def mark_run_pulled(self, run_id: str) -> None:
        self._pulled_runs.add(run_id)
