"""Proof-of-work challenges (``domain.pow``): stateless verification and every way to cheat it."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain.pow import (
    CLOCK_SKEW,
    MAX_COUNTER,
    PowError,
    PowSigner,
    Solved,
    leading_zero_bits,
    meets,
    solve,
)

NOW = 1_800_000_000.0
SIGNER = PowSigner(["pow-test-" + "s" * 32])


def solved(difficulty: int = 8, room: str = "sale") -> tuple[str, int]:
    c = SIGNER.issue(room, difficulty, NOW)
    return c.text, solve(c.text, difficulty)


def refused(reason: str, challenge: object, counter: object, **kw: object) -> PowError:
    args: dict[str, object] = {"room": "sale", "now": NOW + 1, **kw}
    with pytest.raises(PowError) as err:
        SIGNER.verify(challenge, counter, **args)  # type: ignore[arg-type]
    assert err.value.reason == reason, (err.value.reason, str(err.value))
    return err.value


def test_issue_solve_verify() -> None:
    c = SIGNER.issue("sale", 10, NOW)
    assert c.text.startswith("wpow1.sale.10.1800000000.") and len(c.text) < 100
    assert c.as_json() == {"algorithm": "wpow1", "challenge": c.text, "difficulty": 10,
                           "expires_at": 1_800_000_300}  # fmt: skip
    counter = solve(c.text, 10)
    digest = hashlib.sha256(f"{c.text}{counter}".encode()).digest()
    assert leading_zero_bits(digest) >= 10
    ok = SIGNER.verify(c.text, str(counter), room="sale", now=NOW + 5)
    assert ok == Solved("sale", c.challenge_id, 10, 1_800_000_300)
    assert SIGNER.verify(c.text, counter, room="sale", now=NOW + 5) == ok  # an int is fine too


def test_challenges_are_unique_and_ids_are_their_nonces() -> None:
    a, b = SIGNER.issue("sale", 1, NOW), SIGNER.issue("sale", 1, NOW)
    assert a.text != b.text and a.challenge_id != b.challenge_id
    assert a.text.split(".")[4] == a.challenge_id


def test_solve_finds_the_first_counter() -> None:
    c = SIGNER.issue("sale", 6, NOW).text
    first = solve(c, 6)
    assert all(not meets(c, n, 6) for n in range(first)) and meets(c, first, 6)
    assert solve(c, 6, start=first + 1) > first
    with pytest.raises(ValueError, match="no solution in 1 tries"):
        solve(c, 40, limit=0)


def test_lowering_the_difficulty_breaks_the_signature() -> None:
    c = SIGNER.issue("sale", 20, NOW).text
    easier = c.replace(".20.", ".1.", 1)
    refused("bad_signature", easier, solve(easier, 1))


def test_forged_or_foreign_challenges() -> None:
    text, counter = solved()
    other = PowSigner(["another-secret-" + "x" * 32]).issue("sale", 8, NOW).text
    refused("bad_signature", other, solve(other, 8))
    refused("bad_signature", text[:-2] + ("AA" if text[-2:] != "AA" else "BB"), counter)
    refused("wrong_room", text, counter, room="other")


def test_time_limits() -> None:
    text, counter = solved()
    refused("expired", text, counter, now=NOW + 300)  # expires_at itself is too late
    SIGNER.verify(text, counter, room="sale", now=NOW + 299)
    SIGNER.verify(text, counter, room="sale", now=NOW - CLOCK_SKEW)  # a replica a bit behind
    refused("not_yet_valid", text, counter, now=NOW - CLOCK_SKEW - 1)


def test_the_room_raised_its_difficulty() -> None:
    text, counter = solved(8)
    refused("too_easy", text, counter, min_difficulty=9)
    SIGNER.verify(text, counter, room="sale", now=NOW, min_difficulty=8)


def test_wrong_solution() -> None:
    c = SIGNER.issue("sale", 16, NOW).text
    wrong = next(n for n in range(10**6) if not meets(c, n, 16))
    refused("wrong_solution", c, wrong)


@pytest.mark.parametrize(
    "counter", ["007", "-1", "+1", "1e3", " 1", "1 ", "1.0", "", "١٢", True, 1.0, None, [1],
                str(MAX_COUNTER + 1), "9" * 17, -1],
)  # fmt: skip
def test_counter_must_be_canonical_decimal(counter: object) -> None:
    text, _ = solved()
    refused("malformed", text, counter)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".x",
        lambda t: t.replace("wpow1", "wpow2", 1),
        lambda t: t.replace(".8.", ".08.", 1),
        lambda t: t.replace(".8.", ".-8.", 1),
        lambda t: t.replace(".sale.", ".SALE.", 1),
        lambda t: t.replace("1800000000", "1.8e9", 1),
        lambda t: t[:-1],
        lambda t: t + "é",
        lambda t: t + "A" * 200,
        lambda t: "",
    ],
)
def test_malformed_challenges(mangle: object) -> None:
    text, counter = solved()
    refused("malformed", mangle(text), counter)  # type: ignore[operator]


def test_not_a_string() -> None:
    refused("malformed", None, 1)
    refused("malformed", b"wpow1", 1)


def test_key_rotation() -> None:
    old = PowSigner(["old-" + "o" * 32])
    both = PowSigner(["new-" + "n" * 32, "old-" + "o" * 32])
    c = old.issue("sale", 4, NOW).text
    assert both.verify(c, solve(c, 4), room="sale", now=NOW).room == "sale"
    fresh = both.issue("sale", 4, NOW).text
    with pytest.raises(PowError, match="not issued here"):
        old.verify(fresh, solve(fresh, 4), room="sale", now=NOW)


def test_issue_refuses_bad_settings_and_repr_hides_keys() -> None:
    with pytest.raises(ValueError, match="difficulty"):
        SIGNER.issue("sale", 41, NOW)
    with pytest.raises(ValueError, match="invalid room"):
        SIGNER.issue("Sale!", 8, NOW)
    with pytest.raises(ValueError, match="at least one secret"):
        PowSigner([])
    assert "s" * 32 not in repr(SIGNER)


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(bytes(32)) == 256
    assert leading_zero_bits(b"\x80" + bytes(31)) == 0
    assert leading_zero_bits(b"\x00\x01" + bytes(30)) == 15
    assert meets("anything", 0, 0)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=250), st.binary(max_size=50), st.integers(), st.none()),
       st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none()))  # fmt: skip
def test_verify_only_ever_raises_pow_error(challenge: object, counter: object) -> None:
    with pytest.raises(PowError):
        SIGNER.verify(challenge, counter, room="sale", now=NOW)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 8), st.sampled_from(["sale", "a", "x" * 64, "r-1_2"]))
def test_any_issued_challenge_verifies_once_solved(difficulty: int, room: str) -> None:
    c = SIGNER.issue(room, difficulty, NOW)
    assert SIGNER.verify(c.text, solve(c.text, difficulty), room=room, now=NOW).room == room
