"""Day numbers and their FHIR spellings, precomputed once: formatting dates is the generator's hottest path.

The simulation counts time in whole days (``int``, day 0 = 1 January of the calendar's first year) and
minutes within a day; this module turns them into ``YYYY-MM-DD`` and ``YYYY-MM-DDThh:mm:00Z`` strings by
table lookup instead of ``datetime`` arithmetic.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_TIMES = tuple(f"T{h:02d}:{m:02d}:00Z" for h in range(24) for m in range(60))


class Calendar:
    """Lookup tables for every day from 1 January ``first_year`` to 31 December ``last_year``."""

    __slots__ = ("_first", "_ordinal0", "_years", "dates", "first_year", "last_year")

    def __init__(self, first_year: int, last_year: int) -> None:
        self.first_year = first_year
        self.last_year = last_year
        self._ordinal0 = dt.date(first_year, 1, 1).toordinal()
        count = dt.date(last_year, 12, 31).toordinal() - self._ordinal0 + 1
        dates: list[str] = []
        years: list[int] = []
        for offset in range(count):
            day = dt.date.fromordinal(self._ordinal0 + offset)
            dates.append(day.isoformat())
            years.append(day.year)
        self.dates = dates
        self._years = years

    @property
    def size(self) -> int:
        return len(self.dates)

    def day(self, year: int, month: int = 1, day: int = 1) -> int:
        """The day number of a calendar date."""
        return dt.date(year, month, day).toordinal() - self._ordinal0

    def date(self, day: int) -> str:
        return self.dates[day]

    def stamp(self, day: int, minute: int) -> str:
        """A FHIR dateTime/instant at ``minute`` past midnight UTC of ``day`` (minutes may spill into later days)."""
        if minute >= 1440:
            day += minute // 1440
            minute %= 1440
        return self.dates[day] + _TIMES[minute]

    def year(self, day: int) -> int:
        return self._years[day]

    def month(self, day: int) -> int:
        return int(self.dates[day][5:7])

    def us_date(self, day: int) -> str:
        """``MM/DD/YYYY``, the way US notes write dates."""
        text = self.dates[day]
        return f"{text[5:7]}/{text[8:10]}/{text[:4]}"

    def long_date(self, day: int) -> str:
        """``June 2, 2019``."""
        text = self.dates[day]
        return f"{_MONTHS[int(text[5:7]) - 1]} {int(text[8:10])}, {text[:4]}"

    def to_date(self, day: int) -> dt.date:
        return dt.date.fromordinal(self._ordinal0 + day)


@lru_cache(maxsize=4)
def calendar_for(first_year: int, last_year: int) -> Calendar:
    """One calendar per year range per process (building one takes a few tens of milliseconds)."""
    return Calendar(first_year, last_year)
