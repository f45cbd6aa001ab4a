"""Status and progress events from job threads to WebSocket clients (thread -> asyncio fan-out).

The job runner reports from the service's worker thread; WebSocket handlers live on
the server's event loop. :class:`EventHub` hands each event to the loop with
``call_soon_threadsafe`` and puts it on the queue of every client that watches the
job. A queue holds at most ``maxsize`` events; when a slow client falls behind, its
oldest progress events are dropped (the next event carries the current progress),
never a final one.

Example:
    >>> hub = EventHub()
    >>> hub.publish("job-1", {"status": "RUNNING", "progress": 0.5})  # no loop attached: dropped
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["EventHub", "FINAL_STATUSES"]

#: Statuses after which a job sends no more events.
FINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})


class EventHub:
    """Per-job subscriber queues on one event loop, fed from any thread."""

    def __init__(self, maxsize: int = 256):
        self.maxsize = maxsize
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[asyncio.Queue]] = {}
        self._lock = threading.Lock()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the WebSocket handlers run on (called at startup)."""
        self._loop = loop

    def subscribe(self, job_id: str) -> asyncio.Queue:
        """A queue of the job's events (call from the loop)."""
        q: asyncio.Queue = asyncio.Queue(self.maxsize)
        with self._lock:
            self._subs.setdefault(job_id, set()).add(q)
        return q

    def unsubscribe(self, job_id: str, q: asyncio.Queue) -> None:
        with self._lock:
            subs = self._subs.get(job_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del self._subs[job_id]

    def publish(self, job_id: str, event: dict[str, Any]) -> None:
        """Deliver ``event`` to every watcher of ``job_id`` (thread-safe; a no-op without a loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fanout, job_id, dict(event))
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    def _fanout(self, job_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            queues = list(self._subs.get(job_id, ()))
        for q in queues:
            while q.full():
                try:
                    q.get_nowait()  # drop the oldest (a progress event; finals end the stream)
                except asyncio.QueueEmpty:
                    break
            q.put_nowait(event)
