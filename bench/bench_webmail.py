"""Webmail benchmark: one mailbox of 100,000 messages, server-side time of the pages that read it.

    make bench-webmail
    .venv/bin/python bench/bench_webmail.py [--messages 100000] [--requests 30] [--pages WORD ...]
        [--keep | --reuse NAME] [--logs DIR] [--no-http]

Fills a scratch database with one mailbox of `--messages` entries written straight into
`mailbox_entries` (fields as delivery writes them: `common.mailstore.summarize` of a few template
messages, varied in sender, subject, search fields, date, flags and folder; a handful of raw blobs that the
entries point at), starts the directory and the webmail (`python -m webmail`) as processes on it, logs
in through the real login form, and measures:

* in process — the database work of each page: an entry by `_id` (the reference: one index lookup),
  `Mailbox.folders()` (the side menu's unread counts), `Mailbox.page` (first and deep page, with the
  folder's total), `Mailbox.search` (frequent words, a sender, words found nowhere);
* over HTTP — the first page of the inbox, a deep page (page 1,000 by default), a message, its body
  frame, and searches; times are the server's own (`Server-Timing: app;dur=…`, added by the webmail's
  `timing_middleware`) next to the client's.

It prints p50/p95/max per operation, and each in-process p50 as a multiple of the `_id` lookup measured
in the same run; nothing is asserted: figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import email.message  # noqa: E402
import email.utils  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common import mailstore  # noqa: E402
from common.db import BlobStore, ensure_indexes, get_client  # noqa: E402

PASSWORD = "Rentree-Scolaire#Mesure2026"  # noqa: S105 - the benchmark account's password
BATCH = 1000

SENDERS = [
    ("Camille Martin", "camille.martin@ac-montpellier.fr"),
    ("Louis Garcia", "louis.garcia@ac-montpellier.fr"),
    ("Inspection académique de l'Hérault", "ia34@ac-montpellier.fr"),
    ("Rectorat – DPE", "dpe@ac-montpellier.fr"),
    ("Lycée Joffre — Secrétariat", "ce.0340039x@ac-montpellier.fr"),
    ("Éduscol", "lettre@education.gouv.fr"),
    ("Mutuelle MGEN", "info@mgen.fr"),
    ("Pronote", "ne-pas-repondre@index-education.com"),
]
SUBJECTS = [
    "Conseil de classe du {n} — ordre du jour",
    "Réunion parents-professeurs : créneaux {n}",
    "Mouvement intra-académique {n} : calendrier",
    "Sortie scolaire au Pont du Gard (dossier {n})",
    "Compte rendu du conseil pédagogique n° {n}",
    "Formation PAF : inscription {n}",
    "Emploi du temps modifié semaine {n}",
    "Relance : bulletin trimestriel {n}",
]
BODIES = [
    "Bonjour,\n\nVeuillez trouver l'ordre du jour du conseil {n}. Merci de confirmer votre présence.\n",
    "Madame, Monsieur,\n\nLes créneaux de la réunion {n} sont ouverts dans l'ENT jusqu'à vendredi.\n",
    "Bonjour à toutes et à tous,\n\nLe calendrier {n} du mouvement est publié sur le site académique.\n",
]


def template_messages(rng: random.Random) -> list[bytes]:
    """A few realistic raw messages: plain, HTML alternative, with a PDF attachment."""
    raws = []
    for index in range(6):
        name, address = SENDERS[index % len(SENDERS)]
        message = email.message.EmailMessage()
        message["From"] = email.utils.formataddr((name, address))
        message["To"] = "banc.essai@ac-montpellier.fr"
        message["Subject"] = SUBJECTS[index].format(n=index)
        message["Date"] = email.utils.format_datetime(dt.datetime(2026, 9, 1 + index, 8, 30, tzinfo=dt.UTC))
        message["Message-ID"] = email.utils.make_msgid(domain="bench.invalid")
        text = BODIES[index % len(BODIES)].format(n=index) * (1 + index * 3)
        message.set_content(text)
        if index % 2:
            message.add_alternative(
                f"<html><body><p>{text.replace(chr(10), '<br>')}</p></body></html>", "html"
            )
        if index % 3 == 2:
            message.add_attachment(
                rng.randbytes(40_000), "application", "pdf", filename=f"document-{index}.pdf"
            )
        raws.append(message.as_bytes())
    return raws


def build_mailbox(db, address: str, count: int, seed: int = 42) -> None:
    """`count` entries in `address`'s mailbox, over a handful of stored raw messages."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    blobs = BlobStore(db)
    templates = []
    for raw in template_messages(rng):
        message_id = uuid.uuid4().hex
        blobs.put(message_id, raw)
        templates.append((message_id, len(raw), mailstore.summarize(raw).to_document()))
    ensure_indexes(db, mailstore.INDEXES)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # 90 % in the inbox, the rest in the other folders, newest first over three school years.
    folders = [mailstore.INBOX] * 90 + [mailstore.SENT] * 6 + [mailstore.JUNK] * 2 + [mailstore.TRASH] * 2
    with tqdm(total=count, unit="msg", desc="mailbox entries") as bar:
        for start in range(0, count, BATCH):
            batch = []
            for n in range(start, min(count, start + BATCH)):
                message_id, size, summary = templates[n % len(templates)]
                name, sender = SENDERS[rng.randrange(len(SENDERS))]
                received = now - dt.timedelta(seconds=n * 900 + rng.randrange(600))
                doc = dict(summary)
                doc["from"] = {"name": name, "address": sender}
                doc["subject"] = SUBJECTS[rng.randrange(len(SUBJECTS))].format(n=n)
                doc["date"] = received - dt.timedelta(seconds=rng.randrange(120))
                doc["snippet"] = BODIES[n % len(BODIES)].format(n=n).replace("\n", " ").strip()
                # the webmail's search fields, as summarize() folds them
                words = mailstore.fold(f"{doc['subject']} {name} {sender}")
                doc["search_text"] = f"{words} {summary['search_text']}"[: mailstore.SEARCH_TEXT_LENGTH]
                doc["search_from"] = mailstore.fold(f"{name} {sender}")
                doc["search_subject"] = mailstore.fold(doc["subject"])
                batch.append(
                    {
                        **doc,
                        "_id": mailstore.entry_id(f"bench-{n}", address, "rcpt"),
                        "message_id": message_id,
                        "size": size,
                        "received_at": received,
                        "envelope_from": sender,
                        "mailbox": address,
                        "folder": folders[rng.randrange(len(folders))],
                        "flags": {
                            "seen": rng.random() < 0.8,
                            "flagged": rng.random() < 0.03,
                            "answered": False,
                        },
                        "spam": {
                            "verdict": "ham",
                            "score": round(rng.random() * 0.2, 3),
                            "model_version": "bench",
                        },
                    }
                )
            db.mailbox_entries.insert_many(batch, ordered=False)
            bar.update(len(batch))


def inbox_sample(db, address: str, count: int) -> list[str]:
    """Ids of inbox entries among the newest, found by `_id` (build_mailbox's ids are predictable)."""
    found: list[str] = []
    for n in range(count * 3):
        doc = db.mailbox_entries.find_one(
            {"_id": mailstore.entry_id(f"bench-{n}", address, "rcpt")}, {"folder": 1}
        )
        if doc is not None and doc["folder"] == mailstore.INBOX:
            found.append(doc["_id"])
        if len(found) == count:
            break
    return found


def percentiles(timings: list[float]) -> str:
    ordered = sorted(timings)
    p50 = ordered[len(ordered) // 2] * 1000
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000
    return f"p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   max {ordered[-1] * 1000:8.1f} ms"


def measure(label: str, requests_: int, fn: Callable[[int], Any], warm_up: bool = True) -> list[float]:
    if warm_up:
        fn(0)  # connection pools, first template compilation
    timings = []
    for i in range(requests_):
        started = time.perf_counter()
        fn(i)
        timings.append(time.perf_counter() - started)
    print(f"  {label:<46} {percentiles(timings)}   (n={requests_})", flush=True)
    return timings


# --- in process ---------------------------------------------------------------------------------------


#: Searches timed, by label: (free text, sender); the last one matches nothing, so it reads every entry.
SEARCHES = {
    "search 'pont du gard'": ("pont du gard", ""),
    "search sender 'rectorat'": ("", "rectorat"),
    "search 'introuvable' (no match)": ("introuvable", ""),
}


def in_process(db, address: str, ids: list[str], args) -> None:
    from webmail.mailbox import Mailbox

    print(f"\nIn process, {args.requests} calls each (database work only; x = p50 / p50 of the _id read):")
    reference = measure(
        "entry by _id (reference)", args.requests, lambda i: db.mailbox_entries.find_one({"_id": ids[i]})
    )
    base = sorted(reference)[len(reference) // 2]

    def relative(label: str, fn: Callable[[int], Any], requests_: int | None = None) -> None:
        timings = measure(label, requests_ or args.requests, fn)
        print(f"  {'':<46} x {sorted(timings)[len(timings) // 2] / base:,.0f}")

    blobs = BlobStore(db)
    raw_id = db.mailbox_entries.find_one({"_id": ids[0]})["message_id"]
    relative("raw message from the blob store", lambda i: blobs.get(raw_id))
    mailbox = Mailbox(db, address)
    relative("Mailbox.entry(id)", lambda i: mailbox.entry(ids[i]))
    relative("Mailbox.folders() (side menu)", lambda i: mailbox.folders())
    relative("Mailbox.total(INBOX), cached older part", lambda i: mailbox.total("INBOX"))

    def recount(i: int) -> int:
        mailstore.mark_changed(db, address)  # as after a move: the older part is counted again
        return mailbox.total("INBOX")

    relative("Mailbox.total(INBOX) after a change", recount)
    relative("Mailbox.page(INBOX, 1)", lambda i: mailbox.page("INBOX", 1, page_size=args.page_size))
    deep = args.deep_page
    relative(
        f"Mailbox.page(INBOX, {deep:,})", lambda i: mailbox.page("INBOX", deep, page_size=args.page_size)
    )
    for label, (text, sender) in SEARCHES.items():
        slow = "no match" in label
        relative(
            label.replace("search", "Mailbox.search"),
            lambda i, text=text, sender=sender: mailbox.search(text, sender=sender, page_size=args.page_size),
            min(args.requests, 5) if slow else None,
        )


# --- over HTTP ----------------------------------------------------------------------------------------


def login_session(base: str, address: str, directory) -> requests.Session:
    """A logged-in HTTP session, through the real login form."""
    http = requests.Session()
    form = http.get(f"{base}/connexion", timeout=30)
    token = re.search(r'name="csrf_token"\s+value="([^"]+)"', form.text)
    if form.status_code != 200 or token is None:
        raise SystemExit(f"no login form at {base}/connexion (status {form.status_code})")
    reply = http.post(
        f"{base}/connexion",
        data={"csrf_token": token.group(1), "identifiant": address, "mot_de_passe": PASSWORD},
        headers={"Origin": base},
        timeout=30,
        allow_redirects=False,
    )
    if reply.status_code not in (302, 303) or "/courrier" not in reply.headers.get("Location", ""):
        raise SystemExit(f"login failed: {reply.status_code} {reply.headers.get('Location')}")
    return http


def server_ms(response: requests.Response) -> float | None:
    timing = re.search(r"app;dur=([\d.]+)", response.headers.get("Server-Timing", ""))
    return float(timing.group(1)) / 1000 if timing else None


def over_http(base: str, http: requests.Session, ids: list[str], args) -> None:
    print("\nOver HTTP (server = Server-Timing, client = round trip):")
    pages = {
        "inbox page 1": (False, lambda i: "/courrier/INBOX"),
        f"inbox page {args.deep_page:,}": (False, lambda i: f"/courrier/INBOX?page={args.deep_page}"),
        "a message": (False, lambda i: f"/courrier/INBOX/{ids[i]}"),  # its side menu counts the folders
        "a message body (iframe)": (False, lambda i: f"/courrier/message/{ids[i]}/corps?images=0"),
        "search 'pont du gard'": (False, lambda i: "/courrier/recherche?q=pont+du+gard"),
        "search sender 'rectorat'": (False, lambda i: "/courrier/recherche?de=rectorat"),
        "search 'introuvable' (no match)": (True, lambda i: "/courrier/recherche?q=introuvable"),
    }
    for label, (slow, path) in pages.items():
        if args.pages and not any(word in label for word in args.pages):
            continue
        count = min(args.requests, 5) if slow else args.requests
        warm_up = True
        server: list[float] = []
        client: list[float] = []
        statuses = set()
        for i in range(count + warm_up):
            started = time.perf_counter()
            response = http.get(base + path(i), timeout=3600, allow_redirects=False)
            if response.status_code == 303 and "/connexion" in response.headers.get("Location", ""):
                raise SystemExit(
                    f"session ended during the run ({response.headers['Location']}): see the logs"
                )
            elapsed = time.perf_counter() - started
            statuses.add(response.status_code)
            if warm_up and i == 0:
                continue
            client.append(elapsed)
            if (value := server_ms(response)) is not None:
                server.append(value)
        note = "" if statuses == {200} else f"   (HTTP status {sorted(statuses)})"
        print(f"  {label:<28} server {percentiles(server) if server else 'no Server-Timing header'}{note}")
        print(f"  {'':<28} client {percentiles(client)}   (n={count})", flush=True)


def running_webmail(db_name: str, address_holder: dict, folder: Path, args):
    """Start the directory, create the benchmark account, start the webmail; yields (base URL, address)."""
    import contextlib

    from directory.client import DirectoryClient
    from directory.testing import TEST_ESTABLISHMENTS, make_numen, make_person
    from tests.helpers import free_port
    from tests.pipeline import running_stages

    @contextlib.contextmanager
    def run():
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "DIRECTORY_ADDRESS": f"127.0.0.1:{free_port()}",
            "WEBMAIL_PORT": str(port),
            "PUBLIC_URL": base,
            "WEBMAIL_COOKIE_SECURE": "false",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "1024",
            "ARGON2_PARALLELISM": "1",
        }
        with running_stages(["directory"], db_name, folder, **env):
            directory = DirectoryClient(env["DIRECTORY_ADDRESS"])
            account = (
                directory.resolve_recipient(address_holder.get("address", "")) if address_holder else None
            )
            if account is None or not account.deliverable:
                directory.load_establishments(TEST_ESTABLISHMENTS)
                numen = make_numen()
                ok, message, created = directory.create_account(
                    make_person(last_name="Essai", first_name="Banc", numen=numen)
                )
                assert ok, message
                change = directory.change_password(created.address, numen, PASSWORD)
                assert change.ok, change
                address_holder["address"] = created.address
            with running_stages(["webmail"], db_name, folder, **env):
                yield base, directory
            directory.close()

    return run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--deep-page", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", metavar="NAME", help="measure on a database kept by --keep")
    parser.add_argument("--pages", nargs="*", help="HTTP pages to time, by a word of their label")
    parser.add_argument("--logs", default=None, help="folder for the services' logs (default: temporary)")
    parser.add_argument("--no-http", action="store_true", help="in-process measures only")
    args = parser.parse_args()

    client = get_client()
    name = args.reuse or f"bench_webmail_{uuid.uuid4().hex[:8]}"
    db = client[name]
    ferretdb = client.admin.command("buildInfo").get("ferretdbVersion")
    print(f"database {name} on {'FerretDB' if ferretdb else 'MongoDB'}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_webmail_") as tmp:
            tmp = args.logs or tmp
            holder: dict[str, str] = {}
            if args.reuse:
                holder["address"] = db.mailbox_entries.find_one({}, {"mailbox": 1})["mailbox"]
            with running_webmail(name, holder, Path(tmp), args) as (base, directory):
                address = holder["address"]
                if not args.reuse:
                    started = time.perf_counter()
                    build_mailbox(db, address, args.messages)
                    print(f"{args.messages:,} entries in {time.perf_counter() - started:.0f} s for {address}")
                total = db.mailbox_entries.estimated_document_count()
                print(f"mailbox_entries holds {total:,} documents", flush=True)
                inbox_ids = inbox_sample(db, address, args.requests + 1)
                in_process(db, address, inbox_ids, args)
                if not args.no_http:
                    http = login_session(base, address, directory)
                    over_http(base, http, inbox_ids, args)
    finally:
        if not args.keep and not args.reuse:
            client.drop_database(name)
        elif args.keep:
            print(f"kept: --reuse {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
