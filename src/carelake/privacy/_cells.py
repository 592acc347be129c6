"""The small-cell rule: one threshold for every count of people that carelake shows to people.

A count between 1 and ``SMALL_CELL - 1`` can single out a person, so reports, risk summaries and exports
show it as suppressed; zero is safe to show (it singles out no one). CMS and NCHS use 11.

    >>> suppressed(3), suppressed(0), suppressed(11)
    (None, 0, 11)
    >>> show_count(3), show_count(250)
    ('< 11', 250)
"""

from __future__ import annotations

# Aggregates shown to people are suppressed below this count.
SMALL_CELL = 11

# The SQL clause that keeps only groups large enough to show: ``... GROUP BY 1 {SMALL_CELL_HAVING}``.
SMALL_CELL_HAVING = f"HAVING count(*) >= {SMALL_CELL}"


def suppressed(n: int, *, threshold: int = SMALL_CELL) -> int | None:
    """``n`` when it is safe to show, ``None`` when it is a small cell (0 < n < threshold)."""
    return None if 0 < n < threshold else n


def show_count(n: int, *, threshold: int = SMALL_CELL) -> int | str:
    """``n`` as a report cell: the number itself, or ``"< threshold"`` when it is a small cell."""
    kept = suppressed(n, threshold=threshold)
    return f"< {threshold}" if kept is None else kept
