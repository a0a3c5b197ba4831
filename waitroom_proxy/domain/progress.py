"""The waiting page's progress bar: one formula for the scripted and the script-free page.

Version 0.1 had two: the script showed ``(first - position) / first`` (measured from the first
position it saw), the static page ``1 - position / queue_length``. Both gave an empty bar to a
visitor who joined at the front (position 1 of 1: 0 %), and they disagreed with each other.

The formula counts the steps of a visitor's journey: from the place at joining, ``first``, up
to place 1 is ``first`` places, and then one more step through the door. Standing at
``position`` means ``first - position + 1`` of those ``first + 1`` steps are done (the place one
stands on counts: one has reached it). So:

- joining at place 1 shows 50 % (one step left), joining at place 1,000 shows 1 %;
- the bar never goes backwards while the position does not, and never reaches 100 % before
  admission (it is capped at 99 %, and floored at 1 % while waiting so it is never empty);
- admitted is 100 %.

Inputs are what both pages have: the position now and the position at joining (the script
keeps it in ``sessionStorage``; the static page needs it from the status, e.g. a field the
ticket carries). A position larger than the remembered first one (a lottery room re-drawn, a
store that lost its state) is taken as the new first. ``templates/waitroom.js``
(``progressPercent``) implements the same function; the browser test checks they agree.
"""

from __future__ import annotations


def progress_percent(first: int | None, position: int | None, *, admitted: bool = False) -> int:
    """Percent of the way to the front (0-100) for the waiting page's progress bar.

    Args:
        first: the position at joining, or None if unknown (then ``position`` is used).
        position: the position now (1 = next), or None if there is none.
        admitted: the visitor is in.

    Returns:
        100 when admitted; 0 without a position (a pre-queue ticket, an expired place);
        otherwise ``floor(100 * (first - position + 1) / (first + 1))`` within 1..99.
    """
    if admitted:
        return 100
    if position is None or position < 1:
        return 0
    start = position if first is None or first < position else first
    done = start - position + 1
    return max(1, min(99, 100 * done // (start + 1)))
