"""Worker processes forked from the ingest process: for files (``ingest listkeys``) and RING nodes (``ingest ring``).

Threads share one interpreter, and the Python glue between numpy and Arrow calls holds its lock
often enough to leave a fifth of two cores idle; forked workers each parse at full speed. A
worker is sent only a position: it finds the work where it was when it forked. It dies with
the ingest process, and a Ctrl-C stops the work it is busy with but not an idle worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, MutableSequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from ringfsck.store import Store

_inherited: Any = None  # what forked workers work on (set in the parent before they fork)


def inherited_work() -> Any:
    """In a worker of :func:`forked_pool`: the work it was given."""
    assert _inherited is not None, "not in a forked worker"
    return _inherited


def fork_is_safe(store: Store) -> bool:
    """Whether workers may be forked from this process: the one rule for files and RING nodes.

    A local store (no S3 client crosses a fork), Linux (a safe fork), and polars not yet loaded
    here (its thread pool does not survive a fork: the workers load it themselves when a file needs it).
    """
    return (
        not store.on_s3
        and sys.platform.startswith("linux")  # macOS has fork, but its system libraries do not survive one
        and "polars" not in sys.modules
    )


def shared_counters(count: int) -> MutableSequence[int]:
    """``count`` integers in memory shared with the workers forked after it (how far each has got)."""
    return multiprocessing.get_context("fork").RawArray("q", max(count, 1))


@contextmanager
def forked_pool(work: Any, workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes forked from this one, each finding ``work`` with :func:`inherited_work`.

    Call it from the main thread with no other thread running (a fork copies one thread only).
    """
    global _inherited
    _inherited = work
    try:
        # With fork, every worker is started at the first submit (before the progress bar exists).
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker, initargs=(os.getpid(),)
        ) as pool:
            yield pool
    finally:
        _inherited = None


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_busy = False  # in a forked worker: working on a file or node (an interrupt must stop it and clean up)


@contextmanager
def busy_worker() -> Iterator[None]:
    """In a forked worker, while inside: Ctrl-C stops the work (an idle worker ignores it, see below)."""
    global _busy
    _busy = True
    try:
        yield
    finally:
        _busy = False


def _start_worker(parent_pid: int) -> None:
    """In a forked worker: exit when the ingest process dies, even by ``kill -9``; stop quietly on an interrupt.

    Without this a worker blocked on its work queue waits forever for a parent that is gone.
    The kernel delivers SIGKILL when the forking thread exits (the pool forks from the main
    thread, which lives as long as the process); a worker killed mid-file publishes nothing
    (parts are written to a temporary name first; the next writer removes it).
    """
    import ctypes

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's SIGTERM handling is the parent's
    signal.signal(signal.SIGINT, _interrupted_worker)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _interrupted_worker(signum: int, frame: object) -> None:
    """Ctrl-C (or the parent's SIGTERM, forwarded) in a forked worker: a file being parsed is abandoned
    cleanly. An idle worker, blocked on its queue, has nothing to stop: the parent shuts the pool down
    (dying there would break the pool, and with it the recording of files other workers finished)."""
    if _busy:
        raise KeyboardInterrupt


PROGRESS_SECONDS = 0.2  # how often a pool's progress is shown while its work runs


def settle_all(
    futures: dict[Future[Any], int],
    *,
    on_result: Callable[[int, Any], None],
    on_error: Callable[[int, BaseException], None] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Wait for a pool's work, recording each result the moment it arrives (``on_result(position, result)``).

    The first error, or an interrupt, cancels the work not started yet and is raised once the work
    running is settled: whatever finished is recorded first, so nothing published lacks its record.
    ``on_error`` sees each error as it comes; ``on_tick`` runs every PROGRESS_SECONDS.
    """
    failure: BaseException | None = None
    running = set(futures)

    def stop(exc: BaseException) -> None:
        nonlocal failure
        if failure is None:
            failure = exc
            for other in running:
                other.cancel()

    while running:
        try:
            done, running = wait(running, timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
        except KeyboardInterrupt as interrupt:
            stop(interrupt)  # forked workers got the same interrupt, threads finish theirs
            continue
        if on_tick is not None:
            on_tick()
        for future in done:
            position = futures[future]
            try:
                result = future.result()
            except CancelledError:
                continue
            except BaseException as exc:  # noqa: BLE001 - the others finish and are recorded; raised after
                if on_error is not None:
                    on_error(position, exc)
                stop(exc)
                continue
            on_result(position, result)
    if failure is not None:
        raise failure
