"""A small pool of lean worker processes for CPU-bound parsing.

multiprocessing's spawn re-imports the parent's main module in every worker (all of Dagster in
a run process, about two seconds each); these workers import only what their tasks name.
Tasks and results travel pickled over the workers' stdin and stdout.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_LENGTH = struct.Struct("<Q")
# glibc would mmap and unmap every body over 128 KB (embeddings, images) and trim the heap after
# each envelope: half the workers' system time. Bodies stay far below these limits.
_ALLOCATOR = {
    "MALLOC_MMAP_THRESHOLD_": str(128 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
}


class WorkerError(RuntimeError):
    """A worker process died or could not answer."""


def send(stream: IO[bytes], payload: object) -> None:
    """Write one length-prefixed pickle."""
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    """Read one length-prefixed pickle; EOFError at the end of the stream."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("stream closed")
    (length,) = _LENGTH.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("stream closed mid-message")
    return pickle.loads(data)


class WorkerPool:
    """`workers` processes running `python -m chargeback_pipeline.lib.workers`."""

    def __init__(self, workers: int) -> None:
        command = [sys.executable, "-m", "chargeback_pipeline.lib.workers"]
        env = {**os.environ, **_ALLOCATOR}
        self._processes = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            for _ in range(workers)
        ]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, error_type: object, *rest: object) -> None:
        if error_type:
            # After an error nobody reads the results still in flight: stop the workers at once.
            self.close(wait_seconds=0)
            return
        # A worker whose input ends exits by itself; its interpreter's teardown (~70 ms) need
        # not hold up the caller, so a thread waits for it.
        self._end_input()
        threading.Thread(target=self.close, name="reap-parse-workers", daemon=True).start()

    def close(self, wait_seconds: float = 10) -> None:
        """Ask every worker to stop (end of its input); kill any still running after the wait."""
        self._end_input()
        for process in self._processes:
            try:
                process.wait(timeout=wait_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()

    def _end_input(self) -> None:
        for process in self._processes:
            if process.stdin and not process.stdin.closed:
                process.stdin.close()

    def map(self, function: Callable[[T], R], items: Iterable[T], window: int = 2) -> Iterator[R]:
        """`function` over items in order; item i goes to worker i mod n, at most `window`
        tasks per worker in flight, so memory stays flat however many items there are."""
        pending: deque[subprocess.Popen[bytes]] = deque()
        limit = window * len(self._processes)
        for index, item in enumerate(items):
            process = self._processes[index % len(self._processes)]
            try:
                send(_stdin(process), (function, item))
            except BrokenPipeError:
                raise self._died(process) from None
            pending.append(process)
            if len(pending) >= limit:
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())

    def _result(self, process: subprocess.Popen[bytes]) -> Any:
        try:
            ok, value = receive(_stdout(process))
        except EOFError:
            raise self._died(process) from None
        if not ok:
            raise value
        return value

    def _died(self, process: subprocess.Popen[bytes]) -> WorkerError:
        return WorkerError(f"parse worker {process.pid} exited with status {process.wait()}")


def _stdin(process: subprocess.Popen[bytes]) -> IO[bytes]:
    assert process.stdin is not None
    return process.stdin


def _stdout(process: subprocess.Popen[bytes]) -> IO[bytes]:
    assert process.stdout is not None
    return process.stdout


def serve(tasks: IO[bytes], results: IO[bytes]) -> None:
    """Run tasks until the input ends; an exception is sent back, not raised."""
    while True:
        try:
            function, item = receive(tasks)
        except EOFError:
            return
        try:
            answer: tuple[bool, object] = (True, function(item))
        except Exception as error:
            answer = (False, error)
        try:
            send(results, answer)
        except (pickle.PicklingError, TypeError, AttributeError):
            # An error that cannot be pickled still reaches the caller, by name and message.
            send(results, (False, WorkerError(f"{type(answer[1]).__name__}: {answer[1]}")))


if __name__ == "__main__":
    # Results own stdout; anything a task prints goes to stderr instead.
    channel = sys.stdout.buffer
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, channel)
