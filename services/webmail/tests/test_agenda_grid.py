"""The hour grid of the day and week views: rows, spans, lanes of overlapping events, the hours shown."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from webmail.agenda.grid import MAX_LANES, grid_css, layout

PARIS = ZoneInfo("Europe/Paris")
MONDAY = dt.date(2026, 11, 30)


def timed(title: str, start: str, end: str, day: dt.date = MONDAY, end_day: dt.date | None = None) -> dict:
    begins = dt.datetime.combine(day, dt.time.fromisoformat(start), PARIS)
    ends = dt.datetime.combine(end_day or day, dt.time.fromisoformat(end), PARIS)
    return {"summary": title, "all_day": False, "start": begins, "end": ends}


def all_day(title: str, day: dt.date = MONDAY) -> dict:
    return {"summary": title, "all_day": True, "start": day, "end": day + dt.timedelta(days=1)}


def placed(grid, day: dt.date = MONDAY) -> dict[str, tuple[int, int, int, int]]:
    return {p.item["summary"]: (p.row, p.rows, p.lane, p.lanes) for p in grid.days[day]}


def test_working_hours_are_shown_and_an_hour_is_four_rows():
    grid = layout([(MONDAY, [timed("conseil", "10:00", "11:00"), timed("appel", "08:15", "08:30")])])
    assert (grid.first_hour, grid.last_hour, grid.slots) == (8, 18, 40)
    assert grid.hours[0] == "08:00" and grid.hours[-1] == "17:00"
    assert placed(grid) == {"appel": (2, 1, 0, 1), "conseil": (9, 4, 0, 1)}
    assert grid.days[MONDAY][0].classes == "agenda-l2 agenda-h1 agenda-v0-1"


def test_the_hours_widen_to_every_event_of_every_day_shown():
    tuesday = MONDAY + dt.timedelta(days=1)
    grid = layout(
        [
            (MONDAY, [timed("garderie", "07:10", "07:50")]),
            (tuesday, [timed("conseil de classe", "18:30", "20:05", tuesday)]),
        ]
    )
    assert (grid.first_hour, grid.last_hour) == (7, 21)
    # Rows count from 07:00 in both days; a time off the quarter hour takes the quarter it falls in.
    assert placed(grid) == {"garderie": (1, 4, 0, 1)}
    assert placed(grid, tuesday) == {"conseil de classe": (47, 7, 0, 1)}


def test_overlapping_events_share_the_width_and_the_others_keep_it_whole():
    grid = layout(
        [
            (
                MONDAY,
                [
                    timed("a", "09:00", "10:00"),
                    timed("b", "09:30", "11:00"),
                    timed("c", "10:00", "10:30"),  # a is over: c takes its lane
                    timed("d", "14:00", "15:00"),  # a cluster of its own
                ],
            )
        ]
    )
    assert placed(grid) == {
        "a": (5, 4, 0, 2),
        "b": (7, 6, 1, 2),
        "c": (9, 2, 0, 2),
        "d": (25, 4, 0, 1),
    }
    # In the page, in order of start (then lane).
    assert [p.item["summary"] for p in grid.days[MONDAY]] == ["a", "b", "c", "d"]


def test_events_in_one_quarter_hour_overlap_on_screen_so_they_get_lanes():
    grid = layout([(MONDAY, [timed("a", "09:00", "09:05"), timed("b", "09:10", "09:20")])])
    assert placed(grid) == {"a": (5, 1, 0, 2), "b": (5, 2, 1, 2)}


def test_more_overlaps_than_lanes_share_the_last_lane():
    events = [timed(f"e{i}", "09:00", "10:00") for i in range(MAX_LANES + 2)]
    lanes = {p.lane for p in layout([(MONDAY, events)]).days[MONDAY]}
    assert lanes == set(range(MAX_LANES))
    assert {p.lanes for p in layout([(MONDAY, events)]).days[MONDAY]} == {MAX_LANES}


def test_an_event_over_midnight_fills_the_end_of_one_day_and_the_start_of_the_next():
    tuesday = MONDAY + dt.timedelta(days=1)
    night = timed("astreinte", "22:00", "02:00", MONDAY, tuesday)
    grid = layout([(MONDAY, [night]), (tuesday, [night])])
    assert (grid.first_hour, grid.last_hour) == (0, 24)
    assert placed(grid) == {"astreinte": (89, 8, 0, 1)}
    assert placed(grid, tuesday) == {"astreinte": (1, 8, 0, 1)}


def test_all_day_events_are_listed_apart_and_size_the_strip_and_an_instant_takes_a_row():
    tuesday = MONDAY + dt.timedelta(days=1)
    grid = layout(
        [
            (MONDAY, [timed("rappel", "12:00", "12:00"), all_day("vacances"), all_day("sortie")]),
            (tuesday, [all_day("vacances", tuesday)]),
        ]
    )
    assert placed(grid) == {"rappel": (17, 1, 0, 1)}
    assert [item["summary"] for item in grid.all_day[MONDAY]] == ["vacances", "sortie"]
    assert grid.all_day_rows == 2
    many = layout([(MONDAY, [all_day(f"j{i}") for i in range(6)])])
    assert many.all_day_rows == 3


def test_the_stylesheet_has_a_rule_for_every_class_the_layout_can_give():
    css = grid_css()
    assert css.count("@media (min-width: 62em)") == 1
    defined = set(re.findall(r"\.(agenda-[a-z]+-?\d+(?:-\d+)?) \{", css))
    grid = layout(
        [(MONDAY, [timed("nuit", "00:00", "23:59")] + [timed(f"e{i}", "09:00", "10:00") for i in range(5)])]
    )
    for p in grid.days[MONDAY]:
        assert set(p.classes.split()) <= defined, p.classes
    for rows in range(4, 97, 4):
        assert f"agenda-rangees-{rows}" in defined
    for strip in range(4):
        assert f"agenda-journee-{strip}" in defined
    assert "agenda-l97" not in defined and "agenda-v4-4" not in defined
