"""The hour grid of the day and week views: where each timed occurrence sits, as CSS classes.

The pages have a strict CSP (no inline style), so an occurrence cannot be given its top and height in a
`style` attribute. Each day's timed occurrences are instead the items of a CSS grid of quarter-hour rows
(`SLOT_MINUTES`), placed by classes: `agenda-l<row>` (the row it starts on, 1-based), `agenda-h<rows>`
(how many rows it spans) and `agenda-v<lane>-<lanes>` (its column when it overlaps others). The rules of
those classes are `grid_css()`, served once as a stylesheet (`/agenda/grille.css`); they apply only on
wide screens, where the days stand side by side. On a phone the same lists are plain lists.

The rows shown are the working hours (`DEFAULT_FIRST_HOUR` to `DEFAULT_LAST_HOUR`), widened to whole hours
around every timed occurrence of the days shown, so that all the days of a week share one scale and their
rows line up with the hour labels.

Occurrences that overlap form a cluster (linked by overlaps, transitively); each takes the first lane free
at its start, and every member of a cluster is as wide as the cluster's number of lanes allows (at most
`MAX_LANES`; more overlapping occurrences share the last lane).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SLOT_MINUTES = 15
SLOTS_PER_HOUR = 60 // SLOT_MINUTES
DEFAULT_FIRST_HOUR = 8
DEFAULT_LAST_HOUR = 18
MAX_LANES = 4
#: Columns of a day's grid: every lane count up to MAX_LANES divides it.
COLUMNS = math.lcm(*range(1, MAX_LANES + 1))
#: Rows of the all-day strip above the grid, at most (more all-day items make it scroll).
MAX_ALL_DAY_ROWS = 3


@dataclass(frozen=True)
class Placed:
    """One timed occurrence on one day of the grid, and the classes that put it there."""

    item: dict[str, Any]
    start: int  # minutes after midnight on that day
    end: int
    row: int = 1
    rows: int = 1
    lane: int = 0
    lanes: int = 1

    @property
    def classes(self) -> str:
        return f"agenda-l{self.row} agenda-h{self.rows} agenda-v{self.lane}-{self.lanes}"


@dataclass(frozen=True)
class Grid:
    """The hours a grid shows and, per day, its timed occurrences placed and its all-day ones."""

    first_hour: int
    last_hour: int
    days: dict[dt.date, list[Placed]]
    all_day: dict[dt.date, list[dict[str, Any]]]
    all_day_rows: int

    @property
    def slots(self) -> int:
        return (self.last_hour - self.first_hour) * SLOTS_PER_HOUR

    @property
    def hours(self) -> list[str]:
        return [f"{hour:02d}:00" for hour in range(self.first_hour, self.last_hour)]


def _minutes(moment: dt.datetime) -> int:
    return moment.hour * 60 + moment.minute


def segment(item: dict[str, Any], day: dt.date) -> tuple[int, int]:
    """The minutes [start, end) of `day` that a timed occurrence covers (local times, naive or aware)."""
    start, end = item["start"], item["end"]
    begins = 0 if start.date() < day else _minutes(start)
    ends = 24 * 60 if end.date() > day else _minutes(end)
    return begins, max(ends, begins)


def _lanes(segments: list[Placed]) -> list[Placed]:
    """Each segment with its lane and its cluster's lane count (input sorted by start, longest first)."""
    placed: list[Placed] = []
    cluster: list[tuple[Placed, int]] = []
    lane_ends: list[int] = []  # per lane of the cluster, where its last segment ends
    cluster_end = 0

    def close() -> None:
        lanes = min(len(lane_ends), MAX_LANES)
        for member, lane in cluster:
            placed.append(dataclasses.replace(member, lane=min(lane, MAX_LANES - 1), lanes=lanes))

    for seg in segments:
        # The rows it is drawn on: from the start's quarter hour to the end's, at least one.
        shown_start = seg.start - seg.start % SLOT_MINUTES
        shown_end = max(-(-seg.end // SLOT_MINUTES) * SLOT_MINUTES, shown_start + SLOT_MINUTES)
        if cluster and shown_start >= cluster_end:  # overlaps nothing before it: a new cluster
            close()
            cluster, lane_ends = [], []
        lane = next((i for i, free_at in enumerate(lane_ends) if free_at <= shown_start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(shown_end)
        else:
            lane_ends[lane] = shown_end
        cluster.append((seg, lane))
        cluster_end = max(lane_ends)
    if cluster:
        close()
    return placed


def _rows(seg: Placed, origin: int) -> Placed:
    """`seg` with its first row and row count in a grid whose first row starts `origin` minutes after
    midnight: from its start's quarter hour to its end's, at least one."""
    first = (seg.start - origin) // SLOT_MINUTES
    last = -(-(seg.end - origin) // SLOT_MINUTES)
    return dataclasses.replace(seg, row=first + 1, rows=max(1, last - first))


def layout(days: Iterable[tuple[dt.date, Sequence[dict[str, Any]]]]) -> Grid:
    """The grid of `days` (each with its occurrences, as `views.agenda.occurrence_view` gives them)."""
    timed: dict[dt.date, list[Placed]] = {}
    all_day: dict[dt.date, list[dict[str, Any]]] = {}
    first, last = DEFAULT_FIRST_HOUR * 60, DEFAULT_LAST_HOUR * 60
    for day, items in days:
        all_day[day] = [item for item in items if item["all_day"]]
        segments = []
        for item in items:
            if item["all_day"]:
                continue
            start, end = segment(item, day)
            segments.append(Placed(item, start, end))
            first, last = min(first, start), max(last, end, start + SLOT_MINUTES)
        segments.sort(key=lambda s: (s.start, -s.end))
        timed[day] = _lanes(segments)
    first_hour, last_hour = first // 60, min(24, -(-last // 60))
    origin = first_hour * 60
    for day, placed in timed.items():
        timed[day] = sorted((_rows(seg, origin) for seg in placed), key=lambda s: (s.start, s.lane))
    rows = min(max((len(items) for items in all_day.values()), default=0), MAX_ALL_DAY_ROWS)
    return Grid(first_hour, last_hour, timed, all_day, rows)


def grid_css() -> str:
    """The rules of the grid's classes: rows, spans, lanes, grid heights, all-day strip heights."""
    slots = 24 * SLOTS_PER_HOUR
    rules = [
        f".agenda-l{row} {{ grid-row-start: {row}; }}\n.agenda-h{row} {{ grid-row-end: span {row}; }}"
        for row in range(1, slots + 1)
    ]
    for lanes in range(1, MAX_LANES + 1):
        width = COLUMNS // lanes
        rules += [
            f".agenda-v{lane}-{lanes} {{ grid-column: {lane * width + 1} / span {width}; }}"
            for lane in range(lanes)
        ]
    rules += [
        f".agenda-rangees-{count} {{ grid-template-rows: repeat({count}, var(--agenda-rangee)); }}"
        for count in range(SLOTS_PER_HOUR, slots + 1, SLOTS_PER_HOUR)
    ]
    rules += [
        f".agenda-journee-{count} {{ height: calc({count} * var(--agenda-ligne-journee)); }}"
        for count in range(MAX_ALL_DAY_ROWS + 1)
    ]
    body = "\n".join(rules)
    return (
        "/* The hour grid of the day and week views (webmail.agenda.grid), one rule per class. */\n"
        f"@media (min-width: 62em) {{\n{body}\n}}\n"
    )
