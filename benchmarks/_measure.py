"""Wall time, peak memory and CPU of a command and all its descendants (e.g. Spark's JVM).

getrusage only sees children a process waited for, and the JVM that pyspark
starts is a grandchild; so the process tree's RSS and CPU are sampled from /proc.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system, the whole tree (a lower bound: the last sample's of each process)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tree_rss(root: int, cpu: dict[int, float]) -> int:
    """The tree's RSS now; records each process's CPU seconds so far in ``cpu``."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        except OSError:
            continue
        stack.extend(_children(pid))
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str], *, env: dict[str, str] | None = None, interval: float = 0.05) -> Measured:
    """Run ``cmd``, sampling the RSS of its whole process tree every ``interval`` seconds."""
    started, children_before = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    peak = 0
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid, cpu))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    # What the child reaped is exact; the sampled tree also sees grandchildren it did not wait for (the JVM).
    cpu_seconds = max(_children_cpu() - children_before, sum(cpu.values()))
    return Measured(seconds, peak, proc.returncode, stdout, stderr, cpu_seconds)


# Rows per object of the default 8+4 lab world: 12 stripes, splits, versions, MPU parts, orphans, noise.
ROWS_PER_OBJECT = 14.4


def lab_world(path: Path | None, rows: int, nodes: int, *, prefix: str, **plant: float):
    """A lab world of about ``rows`` listkeys rows: the one at ``path`` if it was made with the same
    settings, else a new one there (or in a new temporary directory). ``plant``: generate_world's shares."""
    import tempfile

    from ringfsck.lab import World, generate_world

    objects = max(100, int(rows / ROWS_PER_OBJECT))
    if path is not None and (path / "truth.json").is_file():
        world = World(path)
        settings = world.truth["settings"]
        if settings.get("objects") == objects and settings.get("nodes") == nodes and all(settings.get(k) == v for k, v in plant.items()):
            return world
    target = path or Path(tempfile.mkdtemp(prefix=prefix))
    print(f"generating a world of {objects:,} objects (~{rows:,} rows) in {target}", flush=True)
    return generate_world(target, objects=objects, seed=1, nodes=nodes, **plant)
