"""The calendar in a real browser against the whole platform: a weekly meeting with two colleagues invited
through the real mail path (submission → scan → spam → delivery), each answering from their own mailbox,
the organiser seeing the answers; export and re-import with exceptions; a reminder e-mail; an invitation
from outside the academy; another user's event by id; the week as an hour grid on a wide screen and a
list on a phone."""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import time
import uuid
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, axe_violations, login, screenshot
from tests.helpers import wait_until

PARIS = ZoneInfo("Europe/Paris")


def wait_for_subject(page, pattern: str, folder: str = "INBOX", timeout: float = 120):
    """Reload `folder` until a message whose subject matches `pattern` is listed; open it."""
    deadline = time.monotonic() + timeout
    link = page.get_by_role("link", name=re.compile(pattern))
    while True:
        page.goto(f"/courrier/{folder}")
        if link.count():
            link.first.click()
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} never arrived in {folder}")
        time.sleep(1)


def new_page(browser, platform, address: str, **options):
    context = browser.new_context(base_url=platform["url"], locale="fr-FR", **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    login(page, address, PASSWORD)
    return context, page


def next_monday(weeks: int = 1) -> dt.date:
    today = dt.date.today()
    return today + dt.timedelta(days=7 * weeks - today.weekday())


def fill_event(page, title: str, day: dt.date, start: str, end: str) -> None:
    page.get_by_label("Titre").fill(title)
    page.get_by_label("Date de début", exact=True).fill(day.isoformat())
    page.get_by_label("Heure de début", exact=True).fill(start)
    page.get_by_label("Date de fin", exact=True).fill(day.isoformat())
    page.get_by_label("Heure de fin", exact=True).fill(end)


def occurrences(db, owner: str, start: dt.date) -> list[tuple]:
    from webmail.agenda.store import AgendaStore

    found = AgendaStore(db).events_between(
        owner,
        dt.datetime.combine(start, dt.time()),
        dt.datetime.combine(start + dt.timedelta(days=120), dt.time()),
    )
    return [(o.summary, o.start.isoformat(), o.end.isoformat(), o.modified) for o in found]


def test_weekly_meeting_invitations_answers_export_and_import(
    platform, browser, page, activated_account, tmp_path
):
    people = platform["people"]
    title = f"Conseil pédagogique {uuid.uuid4().hex[:6]}"
    monday = next_monday()

    # Camille creates a weekly meeting and invites Louis and Alice, with the keyboard where it matters.
    login(page, people["Camille"], PASSWORD)
    page.get_by_role("link", name="Agenda", exact=True).first.click()
    page.wait_for_url("**/agenda/semaine**")
    page.get_by_role("link", name="Nouvel événement").first.click()
    fill_event(page, title, monday, "10:00", "11:00")
    page.get_by_label("Se répète").select_option("semaine")
    page.get_by_label("Participants").fill(f"{people['Louis']}, {people['Alice']}")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Enregistrer").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Événement « {title} » créé ; invitations envoyées.")).to_be_visible()
    event_url = page.url
    expect(page.locator("#participants")).to_contain_text("En attente de réponse")

    # The week view, desktop and phone screenshots.
    page.goto(f"/agenda/semaine?date={monday.isoformat()}")
    expect(page.get_by_role("link", name=re.compile(re.escape(title)))).to_have_count(1)
    assert axe_violations(page) == []
    screenshot(page, "agenda-semaine")

    # Louis accepts from his mailbox (keyboard: focus the button, Enter).
    louis_context, louis = new_page(browser, platform, people["Louis"])
    wait_for_subject(louis, f"^Invitation : {re.escape(title)}")
    panel = louis.locator("#invitation")
    expect(panel).to_contain_text(f"Invitation : {title}")
    assert axe_violations(louis) == []
    panel.get_by_role("button", name="Accepter").focus()
    louis.keyboard.press("Enter")
    expect(louis.get_by_text(re.compile("Réponse « Accepté » envoyée"))).to_be_visible()
    expect(louis.locator("#etat-invitation")).to_contain_text("Accepté")
    louis.goto(f"/agenda/semaine?date={monday.isoformat()}")
    expect(louis.get_by_role("link", name=re.compile(re.escape(title)))).to_contain_text("Accepté")
    louis_context.close()

    # Alice declines from hers.
    alice_context, alice = new_page(browser, platform, people["Alice"])
    wait_for_subject(alice, f"^Invitation : {re.escape(title)}")
    alice.locator("#invitation").get_by_role("button", name="Refuser").click()
    expect(alice.get_by_text(re.compile("Réponse « Refusé » envoyée"))).to_be_visible()
    # Alice cannot open Camille's event by its id.
    response = alice.goto(event_url)
    assert response is not None and response.status == 404
    alice_context.close()

    # Camille sees both answers: the replies in her inbox are applied when she opens her calendar.
    def answers():
        page.goto(event_url)
        text = page.locator("#participants").text_content() or ""
        return "Accepté" in text and "Refusé" in text

    try:
        wait_until(answers, timeout=150, interval=2, what="both answers in the organiser's calendar")
    except AssertionError:
        db = platform["db"]
        entries = [
            (e.get("folder"), e.get("subject"), [a.get("filename") for a in e.get("attachments") or []])
            for e in db.mailbox_entries.find({"mailbox": people["Camille"]})
        ]
        raise AssertionError(f"{entries} {list(db.calendar_itip_processed.find())}") from None
    louis_row = page.locator(f'#participants li[data-adresse="{people["Louis"]}"]')
    alice_row = page.locator(f'#participants li[data-adresse="{people["Alice"]}"]')
    expect(louis_row).to_contain_text("Accepté")
    expect(alice_row).to_contain_text("Refusé")
    assert axe_violations(page) == []

    # Exceptions: the second Monday is cancelled, the third moved to Tuesday 14:00.
    second = monday + dt.timedelta(days=7)
    page.goto(f"/agenda/semaine?date={second.isoformat()}")
    page.get_by_role("link", name=re.compile(re.escape(title))).click()
    supprimer = page.locator("form.agenda-supprimer")
    supprimer.get_by_label("cette occurrence").check()
    page.once("dialog", lambda dialog: dialog.accept())
    supprimer.get_by_role("button", name="Supprimer").click()
    expect(page.get_by_text("Occurrence supprimée.")).to_be_visible()
    third = monday + dt.timedelta(days=14)
    page.goto(f"/agenda/semaine?date={third.isoformat()}")
    page.get_by_role("link", name=re.compile(re.escape(title))).click()
    deplacer = page.locator("form.agenda-deplacer")
    deplacer.get_by_label("Nouvelle date").fill((third + dt.timedelta(days=1)).isoformat())
    deplacer.get_by_label("Nouvelle heure").fill("14:00")
    deplacer.get_by_label("cette occurrence").check()
    deplacer.get_by_role("button", name="Déplacer").click()
    expect(page.get_by_text("Événement déplacé.")).to_be_visible()
    expect(page.locator("#quand")).to_contain_text("14:00 – 15:00")
    page.goto(f"/agenda/semaine?date={third.isoformat()}")
    expect(page.get_by_role("link", name=re.compile(re.escape(title)))).to_contain_text("14:00 – 15:00")

    # Export, then import into a new colleague's calendar: the same occurrences, exceptions included.
    page.goto("/agenda/importer")
    assert axe_violations(page) == []
    with page.expect_download() as download:
        page.get_by_role("link", name="Exporter (.ics)").first.click()
    exported = tmp_path / "agenda.ics"
    download.value.save_as(exported)
    assert b"EXDATE" in exported.read_bytes() and b"RECURRENCE-ID" in exported.read_bytes()
    address, _ = activated_account("Import")
    other_context, other = new_page(browser, platform, address)
    other.goto("/agenda/importer")
    other.get_by_label("Fichier iCalendar").set_input_files(str(exported))
    other.get_by_role("button", name="Importer", exact=True).click()
    expect(other.get_by_text(re.compile(r"Import terminé : \d+ événement\(s\) ajouté\(s\)"))).to_be_visible()
    db = platform["db"]
    mine = [o for o in occurrences(db, people["Camille"], monday) if o[0] == title]
    assert occurrences(db, address, monday) == mine
    assert len(mine) > 10 and any(o[3] for o in mine)
    assert not any(o[1].startswith(second.isoformat()) for o in mine)
    # A malformed file: a clear French error, nothing imported.
    broken = tmp_path / "casse.ics"
    broken.write_bytes(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\n")
    other.goto("/agenda/importer")
    other.get_by_label("Fichier iCalendar").set_input_files(str(broken))
    other.get_by_role("button", name="Importer", exact=True).click()
    expect(other.locator("#erreur-import")).to_contain_text("Rien n'a été importé")
    assert axe_violations(other) == []
    assert occurrences(db, address, monday) == mine
    other_context.close()


def test_a_reminder_reaches_the_inbox(platform, page):
    people = platform["people"]
    title = f"Jury de délibération {uuid.uuid4().hex[:6]}"
    login(page, people["Alice"], PASSWORD)
    start = dt.datetime.now(PARIS) + dt.timedelta(minutes=4)
    page.goto("/agenda/nouveau")
    fill_event(page, title, start.date(), f"{start:%H:%M}", f"{start + dt.timedelta(hours=1):%H:%M}")
    page.get_by_label("Date de fin", exact=True).fill((start + dt.timedelta(hours=1)).date().isoformat())
    # DSFR draws the checkboxes over their labels: toggled with the keyboard, as a keyboard user does.
    for label in ("15 min avant", "5 min avant"):
        page.get_by_label(label, exact=True).focus()
        page.keyboard.press("Space")
    expect(page.get_by_label("5 min avant", exact=True)).to_be_checked()
    expect(page.get_by_label("15 min avant", exact=True)).not_to_be_checked()
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_text(f"Événement « {title} » créé.")).to_be_visible()
    # Due in about a minute; the notifier polls every 30 s, then the mail goes through the pipeline.
    wait_for_subject(page, f"^Rappel : {re.escape(title)}", timeout=240)
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Rappel : {title}")


def test_an_invitation_from_outside_the_academy(platform, page):
    people = platform["people"]
    title = f"Salon de l'éducation {uuid.uuid4().hex[:6]}"
    stranger = "organisatrice@exemple.org"
    uid = f"{uuid.uuid4()}@exemple.org"
    day = next_monday(2)
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exemple//FR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nSEQUENCE:0\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID=Europe/Paris:{day:%Y%m%d}T140000\r\nDTEND;TZID=Europe/Paris:{day:%Y%m%d}T160000\r\n"
        f"SUMMARY:{title}\r\nORGANIZER:mailto:{stranger}\r\n"
        f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{people['Louis']}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    message = EmailMessage()
    message["From"] = stranger
    message["To"] = people["Louis"]
    message["Subject"] = f"Invitation : {title}"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@exemple.org>"
    message.set_content("Vous êtes invité.")
    message.add_alternative(ics.encode(), maintype="text", subtype="calendar", params={"method": "REQUEST"})
    with smtplib.SMTP("127.0.0.1", platform["mx"], timeout=60) as smtp:
        smtp.send_message(message, from_addr=stranger, to_addrs=[people["Louis"]])

    login(page, people["Louis"], PASSWORD)
    wait_for_subject(page, f"^Invitation : {re.escape(title)}", timeout=150)
    panel = page.locator("#invitation")
    expect(panel).to_contain_text("vient de l'extérieur de l'académie")
    assert axe_violations(page) == []
    panel.get_by_role("button", name="Accepter").click()
    expect(page.get_by_text(re.compile("Cochez la case de confirmation"))).to_be_visible()
    from webmail.agenda.store import AgendaStore

    store = AgendaStore(platform["db"])
    assert store.find_uid(people["Louis"], uid) == []
    page.locator("#invitation").get_by_label(re.compile("Je confirme")).focus()
    page.keyboard.press("Space")
    page.locator("#invitation").get_by_role("button", name="Peut-être").click()
    expect(page.get_by_text(re.compile("Réponse « Peut-être »"))).to_be_visible()
    stored = store.find_uid(people["Louis"], uid)
    assert len(stored) == 1 and stored[0].external


def test_the_week_is_an_hour_grid_on_a_wide_screen_and_a_list_on_a_phone(platform, browser):
    from webmail.agenda.model import EventInput
    from webmail.agenda.store import AgendaStore

    people = platform["people"]
    store = AgendaStore(platform["db"])
    monday = next_monday(5)
    tag = uuid.uuid4().hex[:6]

    def add(title: str, start: str, end: str, weekday: int = 0, rrule: str | None = None) -> None:
        day = monday + dt.timedelta(days=weekday)
        store.create(
            people["Alice"],
            EventInput(
                summary=f"{title} {tag}",
                start=dt.datetime.combine(day, dt.time.fromisoformat(start), PARIS),
                end=dt.datetime.combine(day, dt.time.fromisoformat(end), PARIS),
                tz="Europe/Paris",
                rrule=rrule,
            ),
        )

    add("Cours", "08:00", "10:00")
    add("Conseil", "10:00", "11:00")
    add("Parents", "10:30", "12:00")
    add("Jury", "10:00", "11:00", weekday=2)
    add("Permanence", "16:00", "17:00", weekday=3, rrule="FREQ=WEEKLY;COUNT=3")
    context = browser.new_context(
        base_url=platform["url"], locale="fr-FR", viewport={"width": 1366, "height": 900}
    )
    page = context.new_page()
    login(page, people["Alice"], PASSWORD)
    page.goto(f"/agenda/semaine?date={monday.isoformat()}")

    def box(title: str) -> dict:
        return page.get_by_role("link", name=re.compile(f"{title} {tag}")).bounding_box()

    cours, conseil, parents, jury = box("Cours"), box("Conseil"), box("Parents"), box("Jury")
    hour = cours["height"] / 2
    assert hour > 20  # an hour is drawn, not a line of a list
    assert abs(conseil["y"] - (cours["y"] + 2 * hour)) < 3 and abs(conseil["height"] - hour) < 3
    assert abs(parents["y"] - (conseil["y"] + hour / 2)) < 3  # 10:30
    # Conseil and Parents overlap: side by side, each half of the day's width; Cours has it whole.
    assert conseil["x"] + conseil["width"] <= parents["x"] + 1
    assert conseil["width"] < cours["width"] * 0.6 and parents["width"] < cours["width"] * 0.6
    # Wednesday's 10:00 is at Monday's 10:00: every day of the week has the same scale.
    assert abs(jury["y"] - conseil["y"]) < 2 and jury["x"] > parents["x"]
    assert axe_violations(page) == []
    # A click on Tuesday's 14:00 (a free quarter hour) opens the new-event form at that time.
    tuesday = monday + dt.timedelta(days=1)
    page.locator(f'ul[data-jour="{tuesday.isoformat()}"]').click(position={"x": 10, "y": 6 * hour + hour / 8})
    page.wait_for_url("**/agenda/nouveau**")
    expect(page.get_by_label("Date de début", exact=True)).to_have_value(tuesday.isoformat())
    expect(page.get_by_label("Heure de début", exact=True)).to_have_value("14:00")
    page.go_back()
    # Cours (Monday 08:00–10:00) dragged by the mouse to Wednesday, its top at 14:00: moved there, length kept.
    page.mouse.move(cours["x"] + 20, cours["y"] + hour)
    page.mouse.down()
    wednesday = page.locator(f'ul[data-jour="{(monday + dt.timedelta(days=2)).isoformat()}"]').bounding_box()
    for step in range(1, 11):
        page.mouse.move(
            cours["x"] + 20 + (wednesday["x"] + 30 - cours["x"] - 20) * step / 10,
            cours["y"] + hour + 6 * hour * step / 10,  # held an hour below its top: the top goes to 14:00
        )
    with page.expect_navigation():  # the page reloads once the move is stored
        page.mouse.up()
    expect(page.get_by_text("Événement déplacé.")).to_be_visible()
    moved = [o for o in occurrences(platform["db"], people["Alice"], monday) if o[0] == f"Cours {tag}"]
    wednesday_day = monday + dt.timedelta(days=2)
    assert [(o[1], o[2]) for o in moved] == [
        (
            dt.datetime.combine(wednesday_day, dt.time(14), PARIS).isoformat(),
            dt.datetime.combine(wednesday_day, dt.time(16), PARIS).isoformat(),
        )
    ]
    cours, jury = box("Cours"), box("Jury")  # the page has the message above it now
    assert abs(cours["y"] - (jury["y"] + 4 * hour)) < 3 and abs(cours["x"] - jury["x"]) < 3
    # One occurrence of a series: moved after a confirmation, the others stay (Thursday 16:00 to Friday).
    permanence = box("Permanence")
    page.once("dialog", lambda dialog: dialog.accept())
    page.mouse.move(permanence["x"] + 20, permanence["y"] + 5)
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(permanence["x"] + 20 + permanence["width"] * 1.2 * step / 5, permanence["y"] + 5)
    with page.expect_navigation():  # the page reloads once the move is stored
        page.mouse.up()
    expect(page.get_by_text("Événement déplacé.")).to_be_visible()
    starts = [
        o[1] for o in occurrences(platform["db"], people["Alice"], monday) if o[0] == f"Permanence {tag}"
    ]
    assert starts == [
        dt.datetime.combine(monday + dt.timedelta(days=days), dt.time(16), PARIS).isoformat()
        for days in (4, 10, 17)
    ]

    page.set_viewport_size({"width": 390, "height": 844})
    # On a phone: lists. Monday's Conseil then Parents one under the other, Wednesday's Jury then Cours.
    conseil, parents, jury, cours = box("Conseil"), box("Parents"), box("Jury"), box("Cours")
    assert parents["y"] > conseil["y"] + conseil["height"] - 1 and jury["y"] > parents["y"]
    assert cours["y"] > jury["y"] + jury["height"] - 1
    assert len({round(b["width"]) for b in (conseil, parents, jury, cours)}) == 1
    assert len({round(b["x"]) for b in (conseil, parents, jury, cours)}) == 1
    context.close()


def test_calendar_views_on_a_phone(platform, browser):
    people = platform["people"]
    context = browser.new_context(
        base_url=platform["url"], locale="fr-FR", viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    login(page, people["Camille"], PASSWORD)
    for view in ("jour", "semaine", "mois"):
        page.goto(f"/agenda/{view}")
        # Nothing wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (view, width)
        assert axe_violations(page) == []
    context.close()
