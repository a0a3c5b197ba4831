"""Configuration problems: every one collected and named by key path, env variable or flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config_helpers import ONE_ROOM, SECRET, problems_of, write
from waitroom_proxy.config import load_settings
from waitroom_proxy.domain.redact import redact_url as mask_url

# --- every problem, with its key path ---------------------------------------------------------


def test_every_problem_is_collected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        port = "abc"
        workers = true
        store_url = "http://cache"
        nats_url = "redis://x"
        upstream = "localhost:8000"
        trusted_proxies = ["10.0.0.1/8", "nope"]
        prefix = "_waitroom/"
        log_level = "loud"
        store_timeout = 0
        max_body_bytes = 1.5
        secret = "short"
        cors_origins = ["https://a.example/path"]
        hots = "x"

        [[rooms]]
        name = "sale"
        capacity = 10

        [[rooms]]
        name = "cheap"
        capacity = 0
        mode = "lifo"
        capcity = 3
        page_status = 404
        session_renewal = "yes"
        admit_rate = -1
        match = ["example.com", "shop.example.com:8080/", "*/a*b"]
        template = "missing.html"
        [rooms.bypass]
        paths = ["robots.txt"]
        methods = ["GET POST"]
        cidrs = ["300.1.1.1"]
        secret_header = "bad header"
        secret = "x"
        colour = "red"

        [[rooms]]
        name = "sale"
        capacity = true
        session_ttl = 7200
        heartbeat_interval = 150
        schedule = {start_at = 1}

        [[rooms]]
        name = "Bad Name!"
        """,
    )
    problems = problems_of(path, env={"WAITROOM_PORT": "x", "WAITROOM_WORKERS": "0"})
    expected = [
        'server.port: must be an integer 1-65535, got "abc"',
        "server.workers: must be an integer >= 1, got true",
        "server.store_url: must be a redis://, rediss://, unix://, redis+cluster://, "
        "rediss+cluster://, redis+sentinel:// or rediss+sentinel:// URL (valkey may stand for "
        'redis), got "http://cache"',
        'server.nats_url: must be a nats:// or tls:// URL with a host, got "redis://x"',
        'server.upstream: must be a http:// or https:// URL with a host, got "localhost:8000"',
        "server.trusted_proxies[0]: must be an IP network like 10.0.0.0/8, 192.0.2.7 or "
        '::1/128, got "10.0.0.1/8" (host bits set)',
        "server.trusted_proxies[1]: must be an IP network like 10.0.0.0/8, 192.0.2.7 or "
        '::1/128, got "nope"',
        'server.prefix: must be a path like "/_waitroom" (leading slash, no trailing slash), '
        'got "_waitroom/"',
        'server.log_level: must be one of critical, error, warning, info, debug, got "loud"',
        "server.store_timeout: must be > 0, got 0",
        "server.max_body_bytes: must be an integer >= 1, got 1.5",
        "server.secret: must be at least 32 bytes long, got 5 (generate one: "
        'python -c "import secrets; print(secrets.token_urlsafe(32))")',
        'server.cors_origins[0]: must be "*" or an origin like "https://shop.example.com" '
        '(scheme and host, no path), got "https://a.example/path"',
        'server.hots: unknown key (did you mean "host"?)',
        "rooms[1].capacity: must be >= 1, got 0",
        'rooms[1].mode: must be one of fifo, random, passthrough, reject, queue_all, got "lifo"',
        'rooms[1].capcity: unknown key (did you mean "capacity"?)',
        "rooms[1].page_status: must be one of 200, 202, 429, 503, got 404",
        'rooms[1].session_renewal: must be true or false, got "yes"',
        "rooms[1].admit_rate: must be >= 0, got -1",
        'rooms[1].match[0]: must be a "host/path-prefix" pattern like "*/", '
        '"shop.example.com/sale": must be host/path-prefix (no \'/\' found), got "example.com"',
        "rooms[1].match[1]: host must not include a port (hosts match without port), "
        'got "shop.example.com:8080/"',
        'rooms[1].match[2]: path must be a plain prefix (no ?, # or *), got "*/a*b"',
        f'rooms[1].template: no such file "missing.html" (looked for {tmp_path}/missing.html)',
        'rooms[1].bypass.paths[0]: must start with "/" or "*", got "robots.txt" '
        '(did you mean "/robots.txt"?)',
        'rooms[1].bypass.methods[0]: must be an HTTP method like "OPTIONS", got "GET POST"',
        "rooms[1].bypass.cidrs[0]: must be an IP network like 10.0.0.0/8, 192.0.2.7 or "
        '::1/128, got "300.1.1.1"',
        'rooms[1].bypass.secret_header: must be an HTTP header name like "waitroom-bypass", '
        'got "bad header"',
        "rooms[1].bypass.secret: must be at least 16 characters long, got 1 (generate one: "
        'python -c "import secrets; print(secrets.token_urlsafe(32))")',
        "rooms[1].bypass.colour: unknown key",
        "rooms[2].capacity: must be an integer >= 1, got true",
        "rooms[2].schedule.start_at: expected a time as text, got int: write e.g. "
        "2025-06-01T10:00:00Z or 2025-06-01T12:00:00+02:00",
        "rooms[2].session_ttl: must be <= session_max (3600), got 7200",
        "rooms[2].abandon_after: must be greater than heartbeat_interval (150), got 120",
        "rooms[2].claim_timeout: must be greater than heartbeat_interval (150), got 30",
        'rooms[3].name: must be 1-64 characters of a-z, 0-9, _ and - (lower case), got "Bad Name!"',
        "rooms[3].capacity: required (an integer >= 1)",
        'WAITROOM_PORT: must be an integer 1-65535, got "x"',
        "WAITROOM_WORKERS: must be >= 1, got 0",
        'rooms[2].name: duplicate room name "sale" (also rooms[0])',
    ]
    assert sorted(problems) == sorted(expected)
    assert len(problems) == len(expected)


def test_secrets_are_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_ROOM + '[server]\nsecret = "hunter2"\nadmin_token = 12345\n')
    problems = problems_of(path, env={})
    assert not any("hunter2" in problem or "12345" in problem for problem in problems)
    assert "server.admin_token: must be a string, got a number" in problems


def test_store_url_password_is_masked_in_messages() -> None:
    problems = problems_of(
        None, env={"WAITROOM_CAPACITY": "1", "WAITROOM_STORE_URL": "http://u:pw@cache"}
    )
    assert problems == [
        "WAITROOM_STORE_URL: must be a redis://, rediss://, unix://, redis+cluster://, "
        "rediss+cluster://, redis+sentinel:// or rediss+sentinel:// URL (valkey may stand for "
        'redis), got "http://u:***@cache"'
    ]
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WAITROOM_PORT": "70000"}, "WAITROOM_PORT: must be an integer 1-65535, got 70000"),
        ({"WAITROOM_PORT": "8.5"}, 'WAITROOM_PORT: must be an integer 1-65535, got "8.5"'),
        ({"WAITROOM_ADMIN_PORT": "0"}, "WAITROOM_ADMIN_PORT: must be an integer 1-65535, got 0"),
        ({"WAITROOM_CAPACITY": "many"}, 'WAITROOM_CAPACITY: must be an integer >= 1, got "many"'),
        ({"WAITROOM_ADMIT_RATE": "-3"}, "WAITROOM_ADMIT_RATE: must be >= 0, got -3"),
        (
            {"WAITROOM_STORE_TIMEOUT": "nan"},
            "WAITROOM_STORE_TIMEOUT: must be a number of seconds > 0, got nan",
        ),
        (
            {"WAITROOM_SIGNING_KEY_FILE": "no/such.pem"},
            'WAITROOM_SIGNING_KEY_FILE: no such file "no/such.pem" (looked for ',
        ),
        (
            {"WAITROOM_STORE_URL": "unix://"},
            'WAITROOM_STORE_URL: must name a socket path: unix:///run/redis.sock, got "unix://"',
        ),
        (
            {"WAITROOM_UPSTREAM": "http://h:99999"},
            "WAITROOM_UPSTREAM: must be a http:// or https:// URL with a host and a valid port, "
            'got "http://h:99999"',
        ),
        (
            {"WAITROOM_UPSTREAM": "http://h/?q=1"},
            'WAITROOM_UPSTREAM: must not have a query or fragment, got "http://h/?q=1"',
        ),
        ({"WAITROOM_HOST": "bad host"}, "WAITROOM_HOST: must be a host name or IP address"),
    ],
)
def test_env_problems_name_the_variable(env: dict[str, str], message: str) -> None:
    problems = problems_of(None, env={"WAITROOM_CAPACITY": "1", **env})
    assert len(problems) == 1
    assert problems[0].startswith(message)


def test_flag_problems_name_the_flag() -> None:
    problems = problems_of(None, env={}, flags={"port": "x", "capacity": 0, "colour": 1})
    assert problems == [
        '--port: must be an integer 1-65535, got "x"',
        "--capacity: must be >= 1, got 0",
        "--colour: unknown key",
    ]


def test_cross_checks_of_server_values() -> None:
    env = {"WAITROOM_CAPACITY": "1", "WAITROOM_PORT": "9000"}
    problems = problems_of(
        None, env={**env, "WAITROOM_ADMIN_PORT": "9000", "WAITROOM_WORKERS": "2"}
    )
    assert problems == [
        "WAITROOM_ADMIN_PORT: must differ from port (9000), got 9000",
        "WAITROOM_WORKERS: 2 workers need a shared store: set store_url (WAITROOM_STORE_URL, "
        "--store-url or [server] store_url), or use 1 worker",
        "WAITROOM_WORKERS: 2 workers need a shared secret: set WAITROOM_SECRET "
        "(or [server] secret), or use 1 worker",
    ]
    # Different admin host: the same port is fine for one process; store and secret satisfy
    # the workers, but workers tell the two listeners apart by port, so it is refused there.
    shared = {
        **env,
        "WAITROOM_ADMIN_PORT": "9000",
        "WAITROOM_ADMIN_HOST": "10.0.0.1",
        "WAITROOM_STORE_URL": "redis://localhost",
        "WAITROOM_SECRET": SECRET,
    }
    assert load_settings(None, env=shared).admin_port == 9000
    assert problems_of(None, env={**shared, "WAITROOM_WORKERS": "2"}) == [
        "WAITROOM_ADMIN_PORT: must differ from port (9000) with more than 1 worker"
    ]
    settings = load_settings(None, env={**shared, "WAITROOM_WORKERS": "2", "WAITROOM_PORT": "9001"})
    assert settings.workers == 2
