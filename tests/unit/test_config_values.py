"""Configuration values: TOML + WAITROOM_* env + flags, their precedence, and the quick start."""

from __future__ import annotations

from pathlib import Path

from tests.unit.config_helpers import ONE_ROOM, SECRET, problems_of, write
from waitroom_proxy.config import load_settings
from waitroom_proxy.domain.policy import Bypass, FailMode, Mode, RoomPolicy

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
