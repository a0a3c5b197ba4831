"""Dragonfly rule: every key a Lua script touches is passed in ``KEYS``.

Dragonfly runs scripts that touch undeclared keys under a global lock (or refuses them), and
no reachable registry has a Dragonfly build, so the rule is checked twice here:

- statically: every ``redis.call`` / ``redis.pcall`` in every script names its key as
  ``KEYS[...]`` or as a local bound to ``KEYS[...]``; no ``SCAN`` / ``KEYS`` commands;
  each script's header documents every ``KEYS[i]`` it uses;
- dynamically, on a real Redis: ``MONITOR`` records every command the scripts run while a
  scenario exercises every store method; ``COMMAND GETKEYS`` names each command's keys, which
  must all be among the ``KEYS`` of the ``EVALSHA`` that ran it.
"""

from __future__ import annotations

import re
import socket
import threading
from importlib import resources

import pytest

from waitroom_proxy.adapters.redis_store import SCRIPT_NAMES, RedisStore, load_script_source
from waitroom_proxy.ports import RoomLimits

LUA_DIR = resources.files("waitroom_proxy.adapters").joinpath("lua")
SCRIPTS = sorted(p.name for p in LUA_DIR.iterdir() if p.name.endswith(".lua"))
KEYLESS = {"TIME"}
FORBIDDEN = {"SCAN", "KEYS", "RANDOMKEY"}
CALL_RE = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?")
ALIAS_RE = re.compile(r"^\s*local\s+([\w\s,]+?)\s*=\s*((?:KEYS\[\d+\]\s*,?\s*)+)$", re.M)
KEYS_REF = re.compile(r"^KEYS\[(\d+|\w+)\]$")


def test_every_script_is_registered() -> None:
    assert sorted(f"{n}.lua" for n in SCRIPT_NAMES) == SCRIPTS


PRELUDES = sorted(p.name for p in LUA_DIR.joinpath("prelude").iterdir() if p.name.endswith(".lua"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_keys_are_declared(name: str) -> None:
    # The script as the store registers it: its preludes included.
    source = load_script_source(name.removesuffix(".lua"))
    header = "\n".join(line for line in source.splitlines() if line.startswith("--"))
    declared = {int(i) for i in re.findall(r"^-- KEYS\[(\d+)\]", header, re.M)}
    assert declared == set(range(1, len(declared) + 1)), f"{name}: header KEYS not 1..n"
    assert re.search(r"^-- returns", header, re.M), f"{name}: header lacks 'returns'"
    assert re.search(r"^-- ARGV\[1\]", header, re.M), f"{name}: header lacks ARGV"

    aliases: dict[str, str] = {}
    for names, values in ALIAS_RE.findall(source):
        refs = [v.strip() for v in values.split(",") if v.strip()]
        for alias, ref in zip((n.strip() for n in names.split(",")), refs, strict=True):
            aliases[alias] = ref
    code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
    calls = CALL_RE.findall(code)
    assert calls, f"{name}: no redis.call found"
    for command, first_arg in calls:
        command = command.upper()
        assert command not in FORBIDDEN, f"{name}: {command} is not allowed in scripts"
        if command in KEYLESS:
            continue
        ref = aliases.get(first_arg.strip(), first_arg.strip())
        match = KEYS_REF.match(ref)
        assert match, f"{name}: {command} key {first_arg.strip()!r} is not a KEYS[...] reference"
        if match.group(1).isdigit():
            assert int(match.group(1)) in declared, f"{name}: {ref} not in the header"
    # Key names are never built inside a script.
    assert "..KEYS" not in code.replace(" ", "") and "KEYS[1].." not in code.replace(" ", "")


@pytest.mark.parametrize("prelude", PRELUDES)
def test_preludes_name_no_key(prelude: str) -> None:
    """Shared code names no key: it is pure, or touches only the keys its caller passes, so the
    keys a script touches are all named in the script's own text."""
    code = "\n".join(
        line.split("--", 1)[0]
        for line in LUA_DIR.joinpath("prelude", prelude).read_text("utf-8").splitlines()
    )
    assert "KEYS" not in code and "ARGV" not in code
    # Every store call's key is a parameter of the function that makes it.
    for fn in re.finditer(r"local function \w+\(([^)]*)\)(.*?)\nend", code, re.S):
        params = {p.strip() for p in fn.group(1).split(",")}
        for call in re.finditer(r"redis\.p?call\(\s*'\w+'\s*,\s*([^,)]+)", fn.group(2)):
            assert call.group(1).strip() in params, (prelude, call.group(0))
    outside = re.sub(r"local function \w+\([^)]*\).*?\nend", "", code, flags=re.S)
    assert "redis.call" not in outside and "redis.pcall" not in outside


def test_the_token_bucket_is_written_once() -> None:
    """arrive and tick refill the same bucket: its formula lives in one prelude."""
    formula = "math.ceil(rate / 60)"
    holders = [n for n in SCRIPTS if formula in LUA_DIR.joinpath(n).read_text("utf-8")]
    assert holders == []
    assert formula in LUA_DIR.joinpath("prelude", "bucket.lua").read_text("utf-8")
    for name in ("arrive", "tick"):
        assert "bucket_refill(" in load_script_source(name)


# -- dynamic check on a real server ------------------------------------------------------------

TOKEN_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """Reads ``MONITOR`` output on a raw socket in a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.buf = b""
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        assert self.buf.startswith(b"+OK")
        self.buf = self.buf.split(b"\r\n", 1)[1]
        self.lines: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                text = line.decode("utf-8", "replace")
                self.lines.append(text)
                if '"monitor-end"' in text:
                    self.done.set()
                    return
            chunk = self.sock.recv(65536)
            if not chunk:
                self.done.set()
                return
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def parse(line: str) -> tuple[str, list[str]]:
    """(source, tokens) of one MONITOR line; source is ``lua`` for script commands."""
    source = line.split("[", 1)[1].split("]", 1)[0].split(" ", 1)[1]
    tokens = [t.replace('\\"', '"').replace("\\\\", "\\") for t in TOKEN_RE.findall(line)]
    return source, tokens


@pytest.mark.redis
async def test_scripts_touch_only_declared_keys(redis_server: object) -> None:
    server = redis_server
    server.flush()  # type: ignore[attr-defined]
    sync = server.client()  # type: ignore[attr-defined]
    host, port = "127.0.0.1", server.port  # type: ignore[attr-defined]
    if getattr(server, "pid", None) is None:
        host = sync.connection_pool.connection_kwargs["host"]
    monitor = Monitor(host, port)
    store = RedisStore(server.url, timeout=2.0)  # type: ignore[attr-defined]
    try:
        r = "keys-room"
        lim = RoomLimits(capacity=2, admit_rate=120, claim_timeout_ms=1_000, session_ttl_ms=1_000)
        await store.arrive(r, "a", lim)
        await store.arrive(r, "b", RoomLimits(capacity=5, count_only=True))
        await store.arrive(r, "c", lim)
        await store.arrive(r, "c", lim)
        await store.arrive(r, "d", lim, score=7)
        await store.arrive(r, "e", RoomLimits(capacity=1, max_queue_length=1))
        await store.heartbeat(r, "c")
        await store.heartbeat(r, "a")
        await store.touch(r, ["a", "b", "x"], 5_000)
        await store.leave(r, "a", 60_000)
        await store.leave(r, "b", 60_000)
        await store.tick(r, lim, force=1)
        await store.claim(r, "c", 1_000)
        store._advance_clock_for_tests(200_000)
        await store.tick(r, lim)
        await store.stats(r)
        await store.revoked_since(r, 0)
        await store.set_meta(r, {"paused": "1", "x": ""})
        await store.init_meta(r, "incarnation", "m1")
        await store.get_meta(r)
        await store.leave(r, "zz", 1)
        await store.arrive(r, "zz", lim, score=1)  # tombstoned: refused
        await store.restore(r, ["s1", "c"], 1_000, 9, ["zz", "d"])
        await store.reassert(r, [("s1", 1_000), ("s2", 1_000), ("zz", 1_000)], ["c", "q"], 60_000)
        await store.hit("192.0.2.1", 5, 60_000)
        sync.echo("monitor-end")
        assert monitor.done.wait(10), "MONITOR output did not arrive"
    finally:
        monitor.close()
        await store.close()

    declared: list[str] | None = None
    script_commands = 0
    for line in monitor.lines:
        source, tokens = parse(line)
        if not tokens:
            continue
        if source != "lua":
            if tokens[0].upper() in ("EVALSHA", "EVAL"):
                declared = tokens[3 : 3 + int(tokens[2])]
            else:
                declared = None
            continue
        script_commands += 1
        assert declared is not None, f"script command without a script: {line}"
        if tokens[0].upper() in KEYLESS:
            continue
        keys = sync.command_getkeys(*tokens)
        undeclared = set(keys) - set(declared)
        assert not undeclared, f"{line}: touches undeclared keys {undeclared}"
    sync.close()
    assert script_commands > 50
