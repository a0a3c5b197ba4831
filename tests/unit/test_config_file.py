"""The configuration file itself: reading it, its syntax and shapes, paths, names and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config_helpers import ONE_ROOM, problems_of, write
from waitroom_proxy.config import load_settings

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
