"""The writer's background upload worker: training goes on while staged steps go to MLflow.

With ``AttributionWriter(..., background=True)`` a ``log_step`` call computes the
metrics and stages the step in the spool (the crash-safe copy, as before) and returns;
this worker then commits the spool (:func:`attrib_mlops.tracking.commit.commit_pending`:
files, manifest, metrics; a deferred ``view.html`` is rendered first), one pass at a
time, in step order, so metrics arrive in order and exactly once. The passes run in a
child process (:mod:`.upload_worker`, ``process=True``, the default: rendering and
uploading then do not compete with training for the GIL) or in a thread of this
process (``process=False``). A step counts as committed only
once that is done. When MLflow cannot be reached, the entries stay in the spool; the
worker retries on the next ``log_step`` or every ``retry_s`` seconds, and says so in one
warning per outage.

Example:
    >>> up = BackgroundUploader(writer)        # doctest: +SKIP
    >>> up.kick()                              # doctest: +SKIP
    >>> up.wait(timeout=10.0)                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from typing import Any

__all__ = ["BackgroundUploader", "leftover_message", "quiet", "redact"]

logger = logging.getLogger("attrib_mlops.tracking.writer")


class BackgroundUploader:
    """One daemon thread committing a writer's spool whenever asked (see the module docstring).

    Args:
        writer: the :class:`~attrib_mlops.tracking.AttributionWriter` whose spool is committed
            (through its ``_flush_pass()``, which serialises with any other commit of the writer).
        retry_s: while the tracking server is unreachable, retry this often even without new steps.
        process: run the passes in a child process (see the module docstring) instead of a thread.
    """

    def __init__(self, writer: Any, retry_s: float = 30.0, process: bool = True) -> None:
        self._writer = writer
        self.process = bool(process)
        self.idle_s = 120.0
        self.started = 0  # worker processes that reported ready (progress for :meth:`drain`)
        self.startup_cpu_s = 0.0  # CPU seconds worker processes spent starting (imports), all of them
        self._cpu_ended = 0.0  # CPU seconds of worker processes that ended
        self._cpu_live = 0.0  # ... and of the current one, as last reported
        self._child: Any = None
        self.retry_s = float(retry_s)
        self._cv = threading.Condition()
        self._asked = 0  # requests made (generation counter)
        self._served = 0  # the last request a finished flush pass covers
        self._stopping = False
        self._released = False  # after take_over(): no pass starts again
        self._thread: threading.Thread | None = None
        self.last_failure: BaseException | None = None
        self.failing = False

    # ------------------------------------------------------------- control
    def kick(self) -> int:
        """Ask for a flush pass (starting the thread if needed); returns the request's number."""
        with self._cv:
            self._asked += 1
            if self._released:
                return self._asked
            self._stopping = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="attrib-mlops-uploader", daemon=True)
                self._thread.start()
            self._cv.notify_all()
            return self._asked

    def wait(self, timeout: float | None = None, request: int | None = None) -> bool:
        """Wait until a flush pass started after request ``request`` (default: a new request) has finished.

        Returns:
            True when that pass finished within ``timeout`` seconds and left nothing pending.
        """
        request = self.kick() if request is None else request
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cv:
            while self._served < request:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return self.last_failure is None

    def drain(self, timeout: float, pending: Any) -> bool:
        """Wait for a full pass over the spool, giving up after ``timeout`` seconds without progress.

        Args:
            timeout: seconds; the clock restarts whenever ``pending()`` (the number of
                entries left) has gone down or a worker process has started, so a slow but
                working upload is not abandoned while an unreachable server costs at most ``timeout``.
                A pass that fails is retried (about once a second) until the window ends.
            pending: callable returning the number of entries left.

        Returns:
            True when a pass finished without failure.
        """
        request = self.kick()
        last, deadline = (pending(), self.started), time.monotonic() + timeout
        while True:
            if self.wait(deadline - time.monotonic(), request=request):
                return True
            with self._cv:
                failed = self._served >= request  # the pass ended with a failure
            now = (pending(), self.started)
            if now[0] < last[0] or now[1] != last[1]:  # something committed, or a worker started
                last, deadline = now, time.monotonic() + timeout
            elif not failed or time.monotonic() >= deadline:
                return False
            if failed:  # e.g. a server still starting: try again while the window lasts
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                request = self.kick()

    def take_over(self) -> None:
        """Stop now, ending the worker process even mid-pass; later commits are this process's job.

        For the end of training when the low-priority worker makes no progress (a busy CPU
        starves it). A pass the worker had begun is redone by the next commit: every commit
        stage is idempotent (:mod:`attrib_mlops.tracking.commit`).
        """
        with self._cv:
            self._stopping = self._released = True
            child, self._child = self._child, None
            self._cv.notify_all()
        if child is not None:
            child.kill()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        """Let the thread end after its current request (it is a daemon: it never keeps the process alive)."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    @property
    def worker_cpu_s(self) -> float:
        """CPU seconds used by the worker processes so far (as they reported them; 0 with ``process=False``)."""
        return self._cpu_ended + self._cpu_live

    @property
    def busy(self) -> bool:
        """True while a request is waiting or being served."""
        with self._cv:
            return self._served < self._asked

    # ------------------------------------------------------------- thread
    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._served >= self._asked and not self._stopping:
                    if not self._cv.wait(self.retry_s if self.failing else self.idle_s):
                        if self.failing:
                            self._asked += 1  # periodic retry during an outage
                        else:
                            self._end_child()  # idle: free the worker process (it restarts on demand)
                if self._released or (self._stopping and self._served >= self._asked):
                    self._end_child()
                    return
                request = self._asked
            try:
                failure = self._child_pass() if self.process else self._writer._flush_pass()
            except BaseException as e:  # noqa: BLE001 - a programming error: keep the spool, say it once
                logger.error("attribution upload failed (%s: %s); the steps stay in %s", type(e).__name__,
                             str(e)[:300], self._writer.spool_dir)
                failure = e
            with self._cv:
                self._note(failure)
                self._served = request
                self._cv.notify_all()
                if self._stopping:
                    self._end_child()
                    return

    def _child_pass(self) -> BaseException | None:
        """One pass in the child process (started, or restarted after it died, on demand)."""
        import json

        from attrib_mlops.tracking.errors import TrackingError, TrackingUnavailableError
        from attrib_mlops.tracking.upload_worker import command

        w = self._writer
        with self._cv:
            child = self._child
            if self._released:
                return TrackingError("the attribution upload was taken over by the training process")
            if child is None or child.poll() is not None:
                uri = str(getattr(w.client, "tracking_uri", None) or "")
                child = self._child = subprocess.Popen(
                    command(uri, w.run_id, str(w.spool_root), w.artifact_root, w.k, w.max_html_samples),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8",
                    env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
                fresh = True
            else:
                fresh = False
        try:  # ``child`` stays this pass's process even if take_over() ends it meanwhile
            if fresh:
                ready = child.stdout.readline()  # {"ready": true}: started (slow on a loaded machine)
                if ready:
                    self.started += 1
                    self._cpu_live = float(json.loads(ready).get("cpu_s", 0.0))
                    self.startup_cpu_s += self._cpu_live
            child.stdin.write("flush\n")
            child.stdin.flush()
            line = child.stdout.readline()
        except (OSError, ValueError) as e:  # ValueError: a pipe closed by take_over()
            line, why = "", str(e)
        else:
            why = "it exited"
        if not line:
            if self._child is child:
                self._end_child()
            return TrackingError(f"the attribution upload worker failed ({why}); the steps stay in the spool")
        reply = json.loads(line)
        self._cpu_live = float(reply.get("cpu_s", self._cpu_live))
        if reply.get("ok"):
            return None
        return TrackingUnavailableError(reply.get("error") or "upload failed")

    def _end_child(self) -> None:
        child, self._child = self._child, None
        self._cpu_ended, self._cpu_live = self._cpu_ended + self._cpu_live, 0.0
        if child is not None:
            try:
                child.stdin.close()  # end of input: the child ends after its current pass
                child.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def _note(self, failure: BaseException | None) -> None:
        if self._released:  # the caller of take_over() reports what is left
            self.last_failure = failure
            return
        if failure is not None and not self.failing:
            n = len(self._writer.spool.entries())
            self._writer._report(failure, f"{n} step entr{'y' if n == 1 else 'ies'} kept in "
                                 f"{self._writer.spool_dir}, uploading in the background", fail_strict=False)
        elif failure is None and self.failing:
            logger.info("tracking server reachable again: spooled attribution steps uploaded")
        self.failing = failure is not None
        self.last_failure = failure


class quiet:
    """Within the block, ``log`` drops records below ERROR (the caller reports in one line instead).

    Example:
        >>> with quiet(logging.getLogger("x")):
        ...     logging.getLogger("x").warning("not shown")
    """

    def __init__(self, log: logging.Logger) -> None:
        self.log = log

    def __enter__(self) -> None:
        self.level = self.log.level
        self.log.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self.log.setLevel(self.level)


def leftover_message(w: Any, elapsed: float, busy: bool, hint: str | None = None) -> str:
    """The one line :meth:`AttributionWriter.close` logs (or raises) about what it left in the spool."""
    n = len(w.spool.entries())
    what = f"{n} step entr{'y' if n == 1 else 'ies'}" + (" and the probe set" if w.spool.probe_path.exists() else "")
    why = "upload still running" if busy else "tracking server unreachable"
    uri = hint or getattr(w.client, "tracking_uri", None) or "<tracking uri>"
    return (f"attribution: {what} of run {w.run_id} not uploaded after {elapsed:.0f} s ({why}); kept in "
            f"{w.spool_dir}, uploaded when a writer on this run starts again (e.g. a resumed training) or by: "
            f"attrib-mlops sync {w.spool_root} --run-id {w.run_id} --tracking-uri {redact(uri)}")


def redact(uri: str) -> str:
    """A tracking URI without a password, for messages.

    >>> redact("https://me:secret@mlflow.example:5000/x")
    'https://me@mlflow.example:5000/x'
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(str(uri))
    if parts.password is None:
        return str(uri)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))
