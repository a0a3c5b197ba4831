"""The JetStream streams the publisher makes sure of, and what differs when they
exist already.

- ``WAITROOM``: subjects ``waitroom.>``, file storage, duplicate window 2 min, max age 7 days.
- ``WAITROOM_DLQ``: JetStream max-delivery advisories of consumers on ``WAITROOM``
  (``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.WAITROOM.>``), file storage, max age 30 days.

Both with ``replicas`` copies (``nats_stream_replicas``): 1 on a single server; 3 on a
three-node cluster, where a stream with one replica stops with the node that holds it.

Creation is idempotent (several replicas may race; the same configuration twice is accepted by
the server). A stream that exists with another configuration (an operator tuned it, or it was
made with another replica count) is used as it is, never changed behind the operator's back,
and reported: ``ensure_streams`` returns one line per such stream naming each setting that
differs, which the publisher logs and counts (``waitroom_events_stream_config_mismatch``).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import nats.js.errors
from nats.js import JetStreamContext, api

from waitroom_proxy.domain.events import SUBJECT_PREFIX

logger = logging.getLogger(__name__)

STREAM: Final = "WAITROOM"
STREAM_SUBJECTS: Final = (f"{SUBJECT_PREFIX}.>",)
DLQ_STREAM: Final = "WAITROOM_DLQ"
DLQ_SUBJECTS: Final = (f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.>",)
DUPLICATE_WINDOW_S: Final = 120.0
MAX_AGE_S: Final = 7 * 24 * 3600.0
DLQ_MAX_AGE_S: Final = 30 * 24 * 3600.0

# JetStream API error: "stream name already in use with a different configuration".
_ERR_STREAM_NAME_EXISTS: Final = 10058

COMPARED: Final = (
    "subjects",
    "retention",
    "storage",
    "discard",
    "max_age",
    "duplicate_window",
    "num_replicas",
)
"""The settings the publisher chooses, hence the ones a mismatch is reported for."""


class StreamSetupError(Exception):
    """JetStream refused to create a stream (e.g. more replicas than the cluster has nodes)."""


def stream_configs(replicas: int = 1) -> list[api.StreamConfig]:
    """The two streams the publisher makes sure of, with ``replicas`` copies each."""
    return [
        api.StreamConfig(
            name=STREAM,
            description="waitroom-proxy events (CloudEvents JSON)",
            subjects=list(STREAM_SUBJECTS),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=MAX_AGE_S,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
        api.StreamConfig(
            name=DLQ_STREAM,
            description="max-delivery advisories of consumers on WAITROOM",
            subjects=list(DLQ_SUBJECTS),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=DLQ_MAX_AGE_S,
            num_replicas=replicas,
        ),
    ]


def _shown(field: str, value: Any) -> str:
    if value is None:
        return "unset"
    if field in ("max_age", "duplicate_window"):
        return f"{float(value):g} s"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(getattr(value, "value", value))


def _same(field: str, wanted: Any, found: Any) -> bool:
    if field in ("max_age", "duplicate_window"):
        return abs(float(wanted or 0) - float(found or 0)) < 1e-3
    if field == "num_replicas":
        return int(wanted or 1) == int(found or 1)
    if field == "subjects":
        return sorted(wanted or []) == sorted(found or [])
    return bool(wanted == found)


def differences(wanted: api.StreamConfig, found: api.StreamConfig) -> list[str]:
    """``"num_replicas 1 (wanted 3)"`` for each compared setting that differs."""
    out: list[str] = []
    for field in COMPARED:
        want, have = getattr(wanted, field), getattr(found, field)
        if not _same(field, want, have):
            out.append(f"{field} {_shown(field, have)} (wanted {_shown(field, want)})")
    return out


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> list[str]:
    """Create ``WAITROOM`` and ``WAITROOM_DLQ`` if missing. Safe to call from many replicas.

    Returns:
        One line per stream that exists with another configuration, naming what differs
        (empty when both are as wanted); each is also logged as a warning.

    Raises:
        StreamSetupError: JetStream refused to create a stream; the message says why.
        nats.errors.Error: JetStream did not answer.
    """
    mismatches: list[str] = []
    for config in stream_configs(replicas):
        try:
            await js.add_stream(config)
            continue
        except nats.js.errors.ServiceUnavailableError:
            raise  # JetStream not ready yet (a cluster electing its leader): transient
        except nats.js.errors.APIError as exc:
            if exc.err_code != _ERR_STREAM_NAME_EXISTS:
                # e.g. 10074 "replicas > 1 not supported in non-clustered mode", or more
                # replicas than the cluster has servers: it will not fix itself.
                raise StreamSetupError(
                    f"cannot create stream {config.name} with {replicas} replica(s): "
                    f"{exc.description or exc}"
                ) from exc
        assert config.name is not None  # every config above is named
        info = await js.stream_info(config.name)
        diff = differences(config, info.config)
        line = f"stream {config.name} exists with a different configuration: " + (
            ", ".join(diff) if diff else "settings the proxy does not choose"
        )
        logger.warning("%s; using it as it is", line)
        if diff:
            mismatches.append(line)
    return mismatches
