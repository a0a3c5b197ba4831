"""``waitroom-proxy events tail``: print the event stream as it is published.

The command's own code, kept out of the publisher adapter: it reads the ``WAITROOM`` stream
with an ephemeral consumer and shares only the stream's name and subjects with the publisher.
Imported lazily by the command, so ``--help`` never loads the NATS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import api

from waitroom_proxy.adapters.nats_events import servers_of
from waitroom_proxy.adapters.nats_streams import STREAM
from waitroom_proxy.domain.events import SUBJECT_PREFIX, event_type_of
from waitroom_proxy.domain.redact import redact_url

__all__ = ["format_event", "tail"]


def format_event(raw: bytes, subject: str) -> str:
    """One line for a stored event: ``time  type  room  data-JSON``.

    Messages that are not CloudEvents are shown as the subject and raw payload.
    """
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        when = str(doc.get("time", "-"))
        type_ = event_type_of(str(doc.get("type", "-")))
        room = str(doc.get("subject") or "-")
        data = json.dumps(doc.get("data", {}), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return f"-  {subject}  -  {raw.decode(errors='replace')}"
    return f"{when}  {type_}  {room}  {data}"


def tail(
    nats_url: str,
    room: str | None,
    *,
    out: TextIO | None = None,
    max_events: int | None = None,
    connect_timeout: float = 3.0,
    on_ready: Callable[[], Any] | None = None,
) -> None:
    """Print new events (one line each) until interrupted (the ``events tail`` command).

    Subscribes with an ephemeral ordered consumer delivering only new messages, to
    ``waitroom.<room>.*.*`` (one room) or ``waitroom.>`` (everything, system events included).

    Args:
        nats_url: NATS URL.
        room: only this room, or None for all.
        out: where to print (default stdout).
        max_events: return after printing this many (for tests); None = until Ctrl-C.
        connect_timeout: seconds to reach NATS before giving up.
        on_ready: called once the subscription is live (for tests).

    Raises:
        SystemExit: NATS cannot be reached or has no ``WAITROOM`` stream (message on stderr).
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(nats_url, room, out or sys.stdout, max_events, connect_timeout, on_ready))


async def _tail(
    url: str,
    room: str | None,
    out: TextIO,
    max_events: int | None,
    connect_timeout: float,
    on_ready: Callable[[], Any] | None,
) -> None:
    last_error: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        last_error.append(exc)

    nc = NatsClient()
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=servers_of(url),
                name="waitroom-proxy events tail",
                connect_timeout=max(1, round(connect_timeout)),
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=on_error,
            ),
            timeout=connect_timeout,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        cause = last_error[-1] if last_error else exc
        raise SystemExit(
            f"waitroom-proxy events tail: cannot reach NATS at {redact_url(url)}: "
            f"{cause or type(cause).__name__}"
        ) from None
    try:
        js = nc.jetstream()
        subject = f"{SUBJECT_PREFIX}.{room}.*.*" if room else f"{SUBJECT_PREFIX}.>"
        try:
            sub = await js.subscribe(
                subject,
                stream=STREAM,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
            )
        except nats.js.errors.NotFoundError:
            raise SystemExit(
                f"waitroom-proxy events tail: no {STREAM} stream at {redact_url(url)} "
                "(it is created when a proxy with this NATS URL starts)"
            ) from None
        if on_ready is not None:
            on_ready()
        seen = 0
        async for msg in sub.messages:
            print(format_event(msg.data, msg.subject), file=out, flush=True)
            seen += 1
            if max_events is not None and seen >= max_events:
                break
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
