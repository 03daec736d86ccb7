"""Calendar and personal contacts benchmark: a busy year per user, thousands of contacts, in process.

    make bench-agenda
    .venv/bin/python bench/bench_agenda.py [--users 3] [--events 1500] [--series 30] [--contacts 3000]
        [--requests 10]

In a scratch database (dropped at the end), imports for each of `--users` users a calendar of one busy
year (`--events` single events, six a day on weekdays, and `--series` unbounded weekly series with a
reminder) through `webmail.agenda.ics.import_calendar`, and `--contacts` vCards through
`ContactBook.import_vcards`; then times, `--requests` times each, what the calendar and contacts pages
ask of the database: `AgendaStore.events_between` over a day, a week and a month, `due_reminders` over
five minutes (every calendar), a page of contacts, a deep page, a count, a word search. It prints
p50/p95; nothing is asserted: figures go to docs/agenda.md and docs/contacts.md.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.db import get_client  # noqa: E402
from webmail.agenda.ics import import_calendar  # noqa: E402
from webmail.agenda.store import AgendaStore  # noqa: E402
from webmail.contacts import ContactBook  # noqa: E402

YEAR_START = dt.datetime(2026, 1, 5, 8, 0)


def busy_year(tag: str, events: int, series: int) -> bytes:
    """An `.ics` calendar: `events` single events (six a day) and `series` unbounded weekly series."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Webmail academique//banc d'essai//FR"]

    def event(uid: str, start: dt.datetime, summary: str, extra: list[str]) -> None:
        end = start + dt.timedelta(hours=1)
        lines.extend(
            [
                "BEGIN:VEVENT",
                f"UID:{uid}@banc.invalid",
                "DTSTAMP:20260101T000000Z",
                f"DTSTART;TZID=Europe/Paris:{start:%Y%m%dT%H%M%S}",
                f"DTEND;TZID=Europe/Paris:{end:%Y%m%dT%H%M%S}",
                f"SUMMARY:{summary}",
                *extra,
                "END:VEVENT",
            ]
        )

    for i in range(events):
        start = YEAR_START + dt.timedelta(days=i // 6, minutes=90 * (i % 6))
        event(f"{tag}-e{i}", start, f"Réunion {i}", [])
    alarm = ["BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Rappel", "TRIGGER:-PT15M", "END:VALARM"]
    for i in range(series):
        start = YEAR_START + dt.timedelta(days=i % 5, hours=i % 8)
        event(f"{tag}-s{i}", start, f"Cours {i}", ["RRULE:FREQ=WEEKLY", *alarm])
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines).encode()


def vcards(tag: str, count: int) -> bytes:
    return "".join(
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"UID:{tag}-c{i}\r\nFN:Personne {i} Dupont\r\nN:Dupont;Personne {i};;;\r\n"
        f"EMAIL:personne.{i}@example.fr\r\nORG:Lycée {i % 50}\r\nEND:VCARD\r\n"
        for i in range(count)
    ).encode()


def measure(label: str, requests: int, fn: Callable[[], Any]) -> None:
    fn()  # warm up
    timings, result = [], None
    for _ in range(requests):
        started = time.perf_counter()
        result = fn()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    size = f"   ({len(result)} results)" if isinstance(result, list) else ""
    print(f"  {label:<40} p50 {statistics.median(timings):8.1f} ms   p95 {p95:8.1f} ms{size}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--series", type=int, default=30)
    parser.add_argument("--contacts", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()

    client = get_client()
    name = f"bench_agenda_{uuid.uuid4().hex[:8]}"
    db = client[name]
    users = [f"banc.essai{n}@ac-montpellier.fr" for n in range(args.users)]
    try:
        store, book = AgendaStore(db), ContactBook(db)
        store.ensure_indexes()
        book.ensure_indexes()
        for n, user in enumerate(users):
            started = time.perf_counter()
            import_calendar(store, user, busy_year(f"u{n}", args.events, args.series))
            imported = time.perf_counter() - started
            started = time.perf_counter()
            book.import_vcards(user, vcards(f"u{n}", args.contacts))
            print(
                f"{user}: calendar imported in {imported:.1f} s, "
                f"{args.contacts:,} contacts in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        me, day = users[0], dt.datetime(2026, 6, 15)
        print(f"\n{args.requests} calls each, in process:")
        for label, days in (("day", 1), ("week", 7), ("month", 31)):
            window = dt.timedelta(days=days)
            measure(
                f"events_between, a {label}",
                args.requests,
                lambda w=window: store.events_between(me, day, day + w),
            )
        now = dt.datetime(2026, 6, 15, 7, 0, tzinfo=dt.UTC)
        measure(
            "due_reminders, 5 minutes",
            args.requests,
            lambda: store.due_reminders(now, now + dt.timedelta(minutes=5)),
        )
        measure("contacts, first page (50)", args.requests, lambda: book.list(me, limit=50))
        deep = max(0, args.contacts - 50)
        measure(f"contacts, page at {deep:,}", args.requests, lambda: book.list(me, limit=50, skip=deep))
        measure("contacts, count", args.requests, lambda: [book.count(me)])
        measure("contacts, search 'lycee 7'", args.requests, lambda: book.search(me, "lycee 7"))
    finally:
        client.drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
