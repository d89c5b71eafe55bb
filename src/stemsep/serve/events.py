"""A job's server-sent events: its state now, each change after (at most ~4 a second), then its end.

The stream reads the job store every ``POLL_S``: a client that connects or
reconnects gets the current state at once, and a change made by any worker
(or by a server before a restart) reaches it without any signalling between
threads. Events carry the job's JSON::

    event: progress      (whenever progress or state changed)
    event: done | failed (once, then the stream ends)

A comment line (``: keep-alive``) goes out after ``keepalive_s`` without an
event, so that proxies keep an idle stream open. A job deleted meanwhile ends
the stream without a final event; reconnecting then gets a 404.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from stemsep.serve.jobs import FINISHED, JobStore

POLL_S = 0.25


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def job_events(store: JobStore, job_id: str, keepalive_s: float) -> AsyncIterator[str]:
    """The event stream of one job, as text chunks."""
    last_sent, quiet_since = None, time.monotonic()
    while True:
        job = await run_in_threadpool(store.get, job_id)
        if job is None:
            return
        data = job.public()
        if job.state in FINISHED:
            yield event(job.state, data)
            return
        if data != last_sent:
            yield event("progress", data)
            last_sent, quiet_since = data, time.monotonic()
        elif time.monotonic() - quiet_since >= keepalive_s:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_S)
