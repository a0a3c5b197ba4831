"""Shared fixtures. Real servers are started by the plugins below on free loopback ports.

- ``tests.fixtures.redis_server``: a real Redis-protocol server (Redis from Debian, or Valkey from
  PyPI), or ``WAITROOM_TEST_REDIS_URL``.
- ``tests.fixtures.redis_cluster``: a real 3-master Redis Cluster.
- ``tests.fixtures.redis_sentinel``: a real master, replica and three sentinels.
- ``tests.fixtures.nats_server``: a real nats-server with JetStream, or ``WAITROOM_TEST_NATS_URL``.
- ``tests.fixtures.nats_cluster``: a real 3-node NATS JetStream cluster.
- ``tests.fixtures.browser``: headless Chromium driven by Playwright.
- ``tests.fixtures.replica_stores``: one store per replica (memory; Redis with two connections).

With ``CI=true`` a missing server fails the run; it is never a skip.
"""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.redis_cluster",
    "tests.fixtures.redis_sentinel",
    "tests.fixtures.nats_server",
    "tests.fixtures.nats_cluster",
    "tests.fixtures.browser",
    "tests.fixtures.replica_stores",
]
