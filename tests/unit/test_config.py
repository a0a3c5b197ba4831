"""Configuration loading: TOML + WAITROOM_* env + flags; every problem named by key path."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from waitroom_proxy.config import (
    BYPASS_KEYS,
    ENV_VARS,
    ROOM_KEYS,
    SERVER_KEYS,
    Settings,
    load_settings,
)
from waitroom_proxy.domain.policy import Bypass, FailMode, Mode, RoomPolicy
from waitroom_proxy.domain.redact import redact_url as mask_url
from waitroom_proxy.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "waitroom.toml"
SECRET = "s" * 32


def write(tmp_path: Path, text: str, name: str = "waitroom.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems_of(*args: object, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


ONE_ROOM = """
    [[rooms]]
    name = "sale"
    capacity = 10
"""


# --- the key tables stay in step with the dataclasses ----------------------------------------


def test_every_settings_field_is_a_server_key() -> None:
    names = {f.name for f in dataclasses.fields(Settings)} - {"rooms"}
    assert set(SERVER_KEYS) == names


def test_every_room_policy_field_is_a_room_key() -> None:
    assert set(ROOM_KEYS) == {f.name for f in dataclasses.fields(RoomPolicy)}
    assert set(BYPASS_KEYS) == {f.name for f in dataclasses.fields(Bypass)}


def test_every_server_key_has_an_env_var() -> None:
    for key in SERVER_KEYS:
        assert ENV_VARS[f"WAITROOM_{key.upper()}"] == key
    for extra in ("WAITROOM_CONFIG", "WAITROOM_CAPACITY", "WAITROOM_ADMIT_RATE"):
        assert extra in ENV_VARS


# --- the example file -------------------------------------------------------------------------


def test_example_file_is_valid_and_complete() -> None:
    settings = load_settings(str(EXAMPLE), env={})
    sale, lottery = settings.rooms
    assert sale.name == "ticket-sale"
    assert sale.capacity == 500 and sale.admit_rate == 300 and sale.mode is Mode.FIFO
    assert "/static/" in sale.bypass.paths and "/robots.txt" in sale.bypass.paths
    assert sale.bypass.methods == ("OPTIONS",)
    assert lottery.mode is Mode.RANDOM and lottery.fail_mode is FailMode.CLOSED
    assert lottery.page_status == 503 and lottery.session_renewal is False
    assert settings.upstream == "http://127.0.0.1:8000"
    # Every room key is written (set or commented) in the example.
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in (*ROOM_KEYS, *SERVER_KEYS, *BYPASS_KEYS):
        assert f"{key} =" in text or f"[rooms.{key}]" in text, key


# --- values and precedence --------------------------------------------------------------------


def test_full_room_is_built(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "wait.html").write_text("<p>wait</p>")
    path = write(
        tmp_path,
        """
        [[rooms]]
        name = "sale_2"
        match = ["Shop.Example.com/Sale/", "*.example.com/"]
        capacity = 5
        admit_rate = 60
        session_ttl = 10.5
        session_renewal = false
        session_max = 20
        heartbeat_interval = 2
        abandon_after = 7
        claim_timeout = 3
        mode = "QUEUE_ALL"
        fail_mode = "closed"
        page_status = 429
        template = "pages/wait.html"
        max_queue_length = 99
        activity_interval = 4
        [rooms.bypass]
        paths = ["/static/", "*.css"]
        methods = ["options", "Head"]
        cidrs = ["10.0.0.0/8", "::1"]
        secret_header = "X-Let-Me-In"
        secret = "0123456789abcdef"
        """,
    )
    (room,) = load_settings(path, env={}).rooms
    assert room == RoomPolicy(
        name="sale_2",
        capacity=5,
        match=("shop.example.com/Sale", "*.example.com/"),
        admit_rate=60,
        session_ttl=10.5,
        session_renewal=False,
        session_max=20.0,
        heartbeat_interval=2.0,
        abandon_after=7.0,
        claim_timeout=3.0,
        mode=Mode.QUEUE_ALL,
        bypass=Bypass(
            paths=("/static/", "*.css"),
            methods=("OPTIONS", "HEAD"),
            cidrs=("10.0.0.0/8", "::1/128"),
            secret_header="x-let-me-in",
            secret="0123456789abcdef",
        ),
        fail_mode=FailMode.CLOSED,
        page_status=429,
        template=str((tmp_path / "pages" / "wait.html").resolve()),
        max_queue_length=99,
        activity_interval=4.0,
    )


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ONE_ROOM
        + """
        [server]
        port = 1001
        host = "0.0.0.0"
        workers = 1
        log_level = "debug"
        """,
    )
    env = {"WAITROOM_PORT": "1002", "WAITROOM_HOST": "127.0.0.2"}
    settings = load_settings(path, env=env, flags={"port": "1003", "workers": None})
    assert settings.port == 1003  # flag
    assert settings.host == "127.0.0.2"  # env
    assert settings.log_level == "debug"  # file
    assert settings.issuer == "waitroom-proxy"  # default
    assert settings.workers == 1  # a None flag is "not given"


def test_env_values_are_parsed(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    env = {
        "WAITROOM_UPSTREAM": "https://origin.internal:8443/app",
        "WAITROOM_STORE_URL": "valkeys://:pw@cache:6380/1",
        "WAITROOM_NATS_URL": "tls://nats:4222",
        "WAITROOM_SECRET": SECRET,
        "WAITROOM_PREVIOUS_SECRETS": f"{'a' * 32}, {'b' * 32},",
        "WAITROOM_SIGNING_KEY_FILE": str(key),
        "WAITROOM_ADMIN_TOKEN": "t" * 16,
        "WAITROOM_PORT": " 9000 ",
        "WAITROOM_ADMIN_PORT": "9001",
        "WAITROOM_WORKERS": "3",
        "WAITROOM_TRUSTED_PROXIES": "10.0.0.0/8,192.0.2.1",
        "WAITROOM_LOG_LEVEL": "WARNING",
        "WAITROOM_PREFIX": "/queue",
        "WAITROOM_STORE_TIMEOUT": "0.25",
        "WAITROOM_CORS_ORIGINS": "https://Shop.example.com",
        "WAITROOM_MAX_BODY_BYTES": "1024",
        "WAITROOM_BODY_TIMEOUT": "12.5",
        "WAITROOM_CAPACITY": "7",
        "WAITROOM_ADMIT_RATE": "30",
        "WAITROOM_NATS_URL_TYPO": "ignored",
    }
    settings = load_settings(None, env=env)
    assert settings.upstream == "https://origin.internal:8443/app"
    assert settings.store_url == "rediss://:pw@cache:6380/1"  # valkeys → rediss for redis-py
    assert settings.previous_secrets == ("a" * 32, "b" * 32)
    assert settings.signing_key_file == str(key.resolve())
    assert (settings.port, settings.admin_port, settings.workers) == (9000, 9001, 3)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    assert settings.log_level == "warning"
    assert settings.store_timeout == 0.25
    assert settings.cors_origins == ("https://shop.example.com",)
    assert settings.max_body_bytes == 1024
    assert settings.body_timeout == 12.5
    (room,) = settings.rooms
    assert (room.name, room.match, room.capacity, room.admit_rate) == ("default", ("*/",), 7, 30)


def test_empty_env_values_count_as_unset() -> None:
    settings = load_settings(None, env={"WAITROOM_CAPACITY": "3", "WAITROOM_STORE_URL": " "})
    assert settings.store_url is None


def test_config_file_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_ROOM)
    assert load_settings(None, env={"WAITROOM_CONFIG": path}).rooms[0].name == "sale"
    # An explicit file wins over WAITROOM_CONFIG.
    other = write(tmp_path, ONE_ROOM.replace("sale", "other"), name="other.toml")
    assert load_settings(other, env={"WAITROOM_CONFIG": path}).rooms[0].name == "other"


def test_secrets_are_not_in_repr(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ONE_ROOM
        + """
        [rooms.bypass]
        secret = "bypass-bypass-bypass"
        [server]
        secret = "file-secret-file-secret-file-secret"
        admin_token = "admin-admin-admin-admin"
        """,
    )
    settings = load_settings(path, env={})
    assert settings.secret == "file-secret-file-secret-file-secret"
    text = repr(settings)
    for secret in ("file-secret", "admin-admin", "bypass-bypass"):
        assert secret not in text


# --- quick start ------------------------------------------------------------------------------


def test_quick_start_from_flags() -> None:
    settings = load_settings(None, env={}, flags={"capacity": 100, "admit_rate": "60"})
    (room,) = settings.rooms
    assert room == RoomPolicy(name="default", capacity=100, admit_rate=60)


def test_no_rooms_and_no_capacity_is_an_error(tmp_path: Path) -> None:
    assert problems_of(None, env={}) == [
        "capacity: no rooms configured: pass --capacity N (or WAITROOM_CAPACITY) "
        "or a config file with [[rooms]]"
    ]
    path = write(tmp_path, "[server]\nport = 8081\n")
    assert problems_of(path, env={})[0].startswith("capacity: no rooms configured")


def test_flag_capacity_overrides_the_single_room(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_ROOM)
    settings = load_settings(path, env={"WAITROOM_ADMIT_RATE": "5"}, flags={"capacity": 3})
    (room,) = settings.rooms
    assert (room.name, room.capacity, room.admit_rate) == ("sale", 3, 5)


def test_flag_capacity_with_several_rooms_is_an_error(tmp_path: Path) -> None:
    other = ONE_ROOM.replace("sale", "other") + 'match = ["other.example.com/"]\n'
    path = write(tmp_path, ONE_ROOM + other)
    assert problems_of(path, env={}, flags={"capacity": 3}) == [
        "--capacity: applies to a single room, but the config file has 2 rooms: "
        "set capacity and admit_rate per room in the file"
    ]


def test_require_upstream() -> None:
    problems = problems_of(None, env={"WAITROOM_CAPACITY": "1"}, require_upstream=True)
    assert problems == [
        "upstream: required to serve: pass --upstream URL, set WAITROOM_UPSTREAM or "
        "[server] upstream in the config file"
    ]


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


# --- the file itself --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "waitroom.toml")
    assert problems_of(missing, env={}) == [f"{missing}: no such file"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert problems_of(str(tmp_path), env={}) == [f"{tmp_path}: is a directory, not a TOML file"]


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 1\nhost "x"\n')
    assert problems_of(path, env={}) == [
        f"{path}: invalid TOML at line 3, column 6: expected '=' after a key in a key/value pair"
    ]


def test_toml_error_at_end_of_file(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_bytes(b"[server]\nport = ")
    assert problems_of(str(path), env={}) == [
        f"{path}: invalid TOML at end of file (line 2, column 8): invalid value"
    ]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_bytes(b'name = "\xff"\n')
    assert problems_of(str(path), env={}) == [f"{path}: not UTF-8 text (byte 8)"]


def test_syntax_error_is_reported_with_env_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "[[rooms]\n")
    problems = problems_of(path, env={"WAITROOM_PORT": "x"})
    assert len(problems) == 2  # no spurious "no rooms" on top of the syntax error
    assert problems[1] == 'WAITROOM_PORT: must be an integer 1-65535, got "x"'


def test_misplaced_top_level_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        capacity = 3
        port = 80
        [servr]
        [rooms]
        name = "x"
        """,
    )
    assert problems_of(path, env={}) == [
        "capacity: unknown key (room settings go in a [[rooms]] table)",
        "port: unknown key (process settings go in the [server] table)",
        'servr: unknown key (did you mean "server"?)',
        "rooms: must be an array of tables ([[rooms]]), got a table",
        "capacity: no rooms configured: pass --capacity N (or WAITROOM_CAPACITY) "
        "or a config file with [[rooms]]",
    ]


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "conf" / "page.html").write_text("<p></p>")
    path = write(
        tmp_path / "conf",
        ONE_ROOM + 'template = "page.html"\n[server]\nsigning_key_file = "key.pem"\n',
    )
    settings = load_settings(path, env={})
    assert settings.signing_key_file == str((tmp_path / "conf" / "key.pem").resolve())
    assert settings.rooms[0].template == str((tmp_path / "conf" / "page.html").resolve())


def test_match_may_be_a_single_string_and_not_empty(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_ROOM + 'match = "shop.example.com/"\n')
    assert load_settings(path, env={}).rooms[0].match == ("shop.example.com/",)
    path = write(tmp_path, ONE_ROOM + "match = []\n")
    assert problems_of(path, env={}) == [
        'rooms[0].match: must list at least one pattern (use ["*/"] for every request)'
    ]


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "cookie",
        "Host",
        "X-Forwarded-For",
        "x_forwarded_host",
        "Waitroom-Verified",
        "content-length",
    ],
)
def test_bypass_secret_header_is_a_header_of_its_own(tmp_path: Path, name: str) -> None:
    # The secret header never reaches the origin: naming one the origin needs would take it away.
    table = f'[rooms.bypass]\nsecret_header = "{name}"\nsecret = "0123456789abcdef"\n'
    path = write(tmp_path, ONE_ROOM + table)
    assert problems_of(path, env={}) == [
        'rooms[0].bypass.secret_header: must be a header of its own, like "waitroom-bypass" '
        f'(it never reaches the origin), got "{name}", which the proxy or the origin needs'
    ]


def test_same_room_may_repeat_a_pattern_but_two_rooms_may_not(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_ROOM + 'match = ["*/", "*/"]\n')
    assert load_settings(path, env={}).rooms[0].match == ("*/", "*/")
    path = write(
        tmp_path,
        ONE_ROOM
        + 'match = ["*/sale/"]\n'
        + '[[rooms]]\nname = "b"\ncapacity = 1\nmatch = ["x.example.com/", "*/sale"]\n',
    )
    assert problems_of(path, env={}) == [
        'rooms[1].match[1]: pattern "*/sale" is already used by room "sale" (rooms[0])'
    ]


@pytest.mark.parametrize(
    ("given", "bound"),
    [
        ("[::1]", "::1"),
        ("::1", "::1"),
        (" [::] ", "::"),
        ("0.0.0.0", "0.0.0.0"),
        ("localhost", "localhost"),
    ],
)
def test_listen_hosts_are_kept_in_the_form_bind_takes(given: str, bound: str) -> None:
    env = {"WAITROOM_CAPACITY": "1", "WAITROOM_HOST": given, "WAITROOM_ADMIN_HOST": given}
    settings = load_settings(None, env=env)
    assert (settings.host, settings.admin_host) == (bound, bound)


@pytest.mark.parametrize("given", ["[localhost]", "[::1", "::1]", "[1.2.3.4]", "a b"])
def test_listen_hosts_that_could_not_bind_are_refused(given: str) -> None:
    (problem,) = problems_of(None, env={"WAITROOM_CAPACITY": "1", "WAITROOM_HOST": given})
    assert problem.startswith("WAITROOM_HOST: must be a host name or IP address to listen on")


def test_a_trailing_newline_is_not_part_of_a_name(tmp_path: Path) -> None:
    # "$" matches before a final newline in Python: names and hosts are matched whole.
    path = write(
        tmp_path, '[[rooms]]\nname = "sale\\n"\ncapacity = 1\nmatch = ["a\\n.example.com/"]\n'
    )
    assert problems_of(path, env={}) == [
        'rooms[0].name: must be 1-64 characters of a-z, 0-9, _ and - (lower case), got "sale\\n"',
        'rooms[0].match[0]: host must be "*", "*.example.com" or a host name, '
        'got "a\\n.example.com/"',
    ]


@pytest.mark.parametrize("depth", [50, 500, 3000])
def test_deeply_nested_values_are_refused_not_a_traceback(tmp_path: Path, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    path = write(tmp_path, ONE_ROOM + f"[server]\ntrusted_proxies = {nested}\n")
    problems = problems_of(path, env={})
    assert len(problems) == 1
    assert problems[0].startswith(("server.trusted_proxies[0]: ", f"{path}: invalid TOML")), (
        problems
    )


def test_huge_integers_are_refused_briefly(tmp_path: Path) -> None:
    digits = "1" + "0" * 5000  # more digits than Python converts from text
    path = write(tmp_path, f'[[rooms]]\nname = "s"\ncapacity = {digits}\n')
    (problem,) = problems_of(path, env={})
    assert problem.startswith(f"{path}: invalid TOML: ") and "digits" in problem
    path = write(tmp_path, f'[[rooms]]\nname = "s"\ncapacity = {digits[:4000]}\n')
    (problem,) = problems_of(path, env={})
    assert (
        problem == f"rooms[0].capacity: must be <= 1000000000, got {digits[:40]}... (4000 digits)"
    )


def test_a_file_too_large_or_not_a_file_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as file:
        file.truncate(5 * 2**20)  # sparse: five MiB of NUL bytes
    assert problems_of(str(big), env={}) == [f"{big}: larger than 4 MiB"]
    # A device would never end (or, a pipe, block): refused before it is opened.
    assert problems_of("/dev/zero", env={}) == ["/dev/zero: not a regular file"]
