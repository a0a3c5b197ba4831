"""The pre-queue draw (``domain.draw``): a permutation anyone can recompute, and what breaks it.

Every tampering an operator (or a man in the middle of the audit endpoint) could try on the
published document is tried here, and each must be caught by ``verify``.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain import draw
from waitroom_proxy.domain.draw import (
    ALGORITHM,
    AuditRecord,
    Seed,
    commit,
    draw_order,
    entry_id,
    new_seed,
    plan_shuffle,
    reveal,
    verify,
)

SEED = Seed(bytes(range(32)))
ROOM = "sale"


def entries(n: int, tag: str = "p") -> list[str]:
    return [entry_id(ROOM, f"{tag}{i}") for i in range(n)]


def revealed(n: int, seed: Seed = SEED) -> dict[str, Any]:
    record = reveal(commit(ROOM, seed, "2030-06-01T09:30:00Z"), seed, entries(n),
                    "2030-06-01T10:00:00Z")  # fmt: skip
    doc: dict[str, Any] = json.loads(json.dumps(record.to_json()))  # as served and parsed
    return doc


seeds = st.binary(min_size=32, max_size=32).map(Seed)
entry_sets = st.sets(st.text(min_size=1, max_size=20), max_size=300).map(
    lambda ids: [entry_id(ROOM, i) for i in ids]
)


@settings(max_examples=200, deadline=None)
@given(seeds, entry_sets)
def test_a_permutation_deterministic_and_verifiable(seed: Seed, listed: list[str]) -> None:
    order = draw_order(seed, listed)
    assert sorted(order) == sorted(listed), "no entry lost, none added"
    assert len(set(order)) == len(order), "no entry twice"
    assert draw_order(seed, reversed(listed)) == order, "input order does not matter"
    record = reveal(commit(ROOM, seed), seed, listed)
    assert verify(json.loads(json.dumps(record.to_json()))) == draw.Verdict(True, True)


@settings(max_examples=100, deadline=None)
@given(seeds, seeds, st.integers(20, 200))
def test_another_seed_gives_another_order(a: Seed, b: Seed, n: int) -> None:
    # 20! orders: two seeds giving the same one is a 1-in-2.4e18 event, not a flake.
    if a != b:
        assert draw_order(a, entries(n)) != draw_order(b, entries(n))


def test_another_entry_set_redraws_everyone() -> None:
    base = draw_order(SEED, entries(1000))
    more = draw_order(SEED, [*entries(1000), entry_id(ROOM, "late")])
    shared = [e for e in more if e in set(base)]
    assert shared != base, "one more entry changes the relative order of the others"


def test_ten_thousand_entries() -> None:
    doc = revealed(10_000)
    assert len(doc["order"]) == len(set(doc["order"])) == 10_000
    assert verify(doc).ok


def test_known_answer() -> None:
    # Fixed vectors: any change to the algorithm must change its name.
    assert (
        entry_id("sale", "abc") == hashlib.sha256(b"waitroom-entry-v1\0sale\0abc").hexdigest()[:32]
    )
    assert SEED.commitment() == hashlib.sha256(bytes(range(32))).hexdigest()
    order = draw_order(SEED, entries(5))
    assert [entries(5).index(e) for e in order] == KNOWN_ORDER


KNOWN_ORDER = [2, 3, 4, 1, 0]


def test_the_documented_recipe_recomputes_the_order() -> None:
    doc = revealed(500)
    assert draw.__doc__ is not None
    recipe = draw.__doc__.split("standard library only::", 1)[1].split("\n\n", 2)[1]
    code = textwrap.dedent(recipe).replace('json.load(open("audit.json"))', "DOC")
    exec(code, {"DOC": doc})  # the module's own docstring
    doc["order"][0], doc["order"][1] = doc["order"][1], doc["order"][0]
    with pytest.raises(AssertionError):
        exec(code, {"DOC": doc})


def test_before_the_reveal_only_the_commitment() -> None:
    record = commit(ROOM, SEED, "2030-06-01T09:30:00Z")
    doc = record.to_json()
    assert doc["seed"] is None and doc["order"] == [] and doc["algorithm"] == ALGORITHM
    assert verify(doc) == draw.Verdict(True, False)
    assert SEED.hex() not in json.dumps(doc)


def test_the_seed_cannot_change_after_the_commitment() -> None:
    record = commit(ROOM, SEED)
    with pytest.raises(ValueError, match="does not match the published commitment"):
        reveal(record, new_seed(), entries(10))


def swap(doc: dict[str, Any]) -> None:
    doc["order"][3], doc["order"][7] = doc["order"][7], doc["order"][3]


def other_seed(doc: dict[str, Any]) -> None:
    doc["seed"] = new_seed().hex()


def other_seed_and_commitment(doc: dict[str, Any]) -> None:
    s = new_seed()
    doc["seed"], doc["commitment"] = s.hex(), s.commitment()


def drop(doc: dict[str, Any]) -> None:
    doc["order"].pop(5)


def insert(doc: dict[str, Any]) -> None:
    doc["order"].insert(0, entry_id(ROOM, "friend"))


def insert_everywhere(doc: dict[str, Any]) -> None:
    e = entry_id(ROOM, "friend")
    doc["entries"].append(e)
    doc["order"].insert(0, e)


def duplicate(doc: dict[str, Any]) -> None:
    doc["order"][9] = doc["order"][2]


def duplicate_both(doc: dict[str, Any]) -> None:
    doc["entries"].append(doc["entries"][0])
    doc["order"].append(doc["entries"][0])


def hide_seed(doc: dict[str, Any]) -> None:
    doc["seed"] = None


def short_seed(doc: dict[str, Any]) -> None:
    doc["seed"] = doc["seed"][:62]


def upper_seed(doc: dict[str, Any]) -> None:
    doc["seed"] = doc["seed"].upper()


def bad_entry(doc: dict[str, Any]) -> None:
    doc["order"][0] = "<script>"


def new_algorithm(doc: dict[str, Any]) -> None:
    doc["algorithm"] = "waitroom-draw-v2"


def bad_commitment(doc: dict[str, Any]) -> None:
    doc["commitment"] = 42


def entries_not_a_list(doc: dict[str, Any]) -> None:
    doc["entries"] = {"a": 1}


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (swap, r"order: place 4 is \w+, the draw gives"),
        (other_seed, "its SHA-256 is not the published commitment"),
        (other_seed_and_commitment, r"order: place \d+ is"),  # a new seed re-draws everyone
        (drop, "order: lacks 1 entries"),
        (insert, "order: has 1 entries that are not entries"),
        (insert_everywhere, r"order: place \d+ is"),
        (duplicate, "order: 1 appear more than once"),
        (duplicate_both, "entries: 1 appear more than once"),
        (hide_seed, "order: published without the seed"),
        (short_seed, "seed: expected 64 lower-case hex digits"),
        (upper_seed, "seed: expected 64 lower-case hex digits"),
        (bad_entry, "order: 1 malformed"),
        (new_algorithm, "unknown algorithm 'waitroom-draw-v2'"),
        (bad_commitment, "commitment: expected 64 lower-case hex digits"),
        (entries_not_a_list, "entries: expected a list"),
    ],
)
def test_every_tampering_is_caught(tamper: Any, says: str) -> None:
    doc = revealed(50)
    tamper(doc)
    verdict = verify(doc)
    assert not verdict.ok
    assert any(re.search(says, p) for p in verdict.problems), verdict.problems


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(json_values, st.dictionaries(st.sampled_from(
    ["algorithm", "commitment", "seed", "entries", "order", "room"]), json_values))  # fmt: skip
def test_verify_never_raises_on_any_json(anything: Any, overrides: dict[str, Any]) -> None:
    assert isinstance(verify(anything), draw.Verdict)
    doc = {**revealed(8), **overrides}
    verdict = verify(doc)
    assert isinstance(verdict, draw.Verdict)


def test_seed_is_secret_in_reprs_and_checked() -> None:
    assert SEED.hex() not in repr(SEED) and SEED.value.hex() not in repr(commit(ROOM, SEED))
    with pytest.raises(ValueError, match="32 bytes"):
        Seed(b"short")
    with pytest.raises(ValueError, match="64 lower-case hex"):
        Seed.from_hex("zz" * 32)
    assert Seed.from_hex(SEED.hex()) == SEED
    assert new_seed() != new_seed()


def test_draw_refuses_what_is_not_a_set_of_entries() -> None:
    with pytest.raises(ValueError, match="appear twice"):
        draw_order(SEED, [*entries(3), entries(3)[0]])
    with pytest.raises(ValueError, match="malformed"):
        draw_order(SEED, ["P" * 32])


def test_plan_gives_increasing_scores_in_draw_order() -> None:
    place_ids = [f"place-{i}" for i in range(100)]
    record = commit(ROOM, SEED)
    plan = plan_shuffle(record, SEED, place_ids, first_score=41, revealed_at="2030-06-01T10:00:00Z")
    assert [entry_id(ROOM, pid) for pid, _ in plan.scores] == list(plan.audit.order)
    assert [score for _, score in plan.scores] == list(range(41, 141))
    assert plan.min_seq == 140
    assert sorted(pid for pid, _ in plan.scores) == sorted(place_ids)
    assert verify(plan.audit).ok
    with pytest.raises(ValueError, match="appears twice"):
        plan_shuffle(record, SEED, ["a", "b", "a"], first_score=1)
    empty = plan_shuffle(record, SEED, [], first_score=7)
    assert empty.scores == () and empty.min_seq == 6 and verify(empty.audit).ok


def test_audit_record_shape() -> None:
    doc = revealed(3)
    assert set(doc) == {"room", "algorithm", "commitment", "committed_at", "seed",
                        "revealed_at", "entries", "order"}  # fmt: skip
    assert doc["entries"] == sorted(doc["entries"])
    assert AuditRecord(**{**doc, "entries": tuple(doc["entries"]),
                          "order": tuple(doc["order"])}).revealed  # fmt: skip
