"""A full ``python -m bench`` run carries the one-room ceiling and the store clients over.

Those two parts take minutes and a quiet machine, so ``bench.ceiling`` and
``bench.redis_client_bench --write`` write them apart, and a full run puts them back into
``bench/RESULTS.md`` between their markers (``results_doc.ceiling_section``). The smoke and
quick runs do not render them, so this is what keeps that step importable and whole.
"""

from __future__ import annotations

from bench.ceiling_report import BEGIN, END, RESULTS
from bench.redis_client_bench import MARKERS
from bench.results_doc import ceiling_section


def test_a_full_run_carries_the_ceiling_and_the_clients_over() -> None:
    text = "\n".join(ceiling_section())
    clients = RESULTS.parent / "clients.md"
    assert RESULTS.exists() and clients.exists()
    for path, (begin, end) in ((RESULTS, (BEGIN, END)), (clients, MARKERS)):
        body = path.read_text().rstrip("\n")
        assert f"{begin}\n{body}\n\n{end}" in text
