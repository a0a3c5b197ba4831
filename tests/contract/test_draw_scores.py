"""The draw's store-side form (``domain.draw.plan_shuffle``) on every store adapter.

Until the shuffle script exists, the plan's scores are applied through the store's existing
``arrive(score=...)`` (what a returning ticket does): the store must then promote the
pre-queue in draw order, and a visitor arriving after the start must queue behind all of it.
This pins what the later Lua script has to reproduce atomically.
"""

from __future__ import annotations

from tests.contract.conftest import StoreEnv
from waitroom_proxy.domain.draw import commit, entry_id, new_seed, plan_shuffle, verify
from waitroom_proxy.ports import PlaceStatus, RoomLimits

R = "sale"
N = 60
QUEUE_ONLY = RoomLimits(
    capacity=N + 1,
    abandon_after_ms=60_000,
    claim_timeout_ms=60_000,
    session_ttl_ms=60_000,
    direct_admit=False,
    promote=False,
)


async def test_plan_scores_admit_in_draw_order_and_later_arrivals_queue_behind(
    store_env: StoreEnv,
) -> None:
    s = store_env.store
    seed = new_seed()
    record = commit(R, seed)
    pre = [f"pre-{i:02d}" for i in range(N)]
    plan = plan_shuffle(record, seed, pre, first_score=1)
    for pid, score in reversed(plan.scores):  # the store's order must come from the scores
        view = await s.arrive(R, pid, QUEUE_ONLY, score=score)
        assert view.status is PlaceStatus.WAITING
    late = await s.arrive(R, "after-start", QUEUE_ONLY)
    assert late.position == N + 1 and late.score > plan.min_seq

    promoted: list[str] = []
    admit = RoomLimits(capacity=N + 1, abandon_after_ms=60_000, claim_timeout_ms=60_000,
                       session_ttl_ms=60_000)  # fmt: skip
    while len(promoted) < N + 1:
        result = await s.tick(R, admit)
        assert result.promoted, "the queue must drain"
        promoted += result.promoted
    assert promoted[:N] == [pid for pid, _ in plan.scores]
    assert promoted[N] == "after-start"
    assert [entry_id(R, pid) for pid in promoted[:N]] == list(plan.audit.order)
    assert verify(plan.audit).ok
