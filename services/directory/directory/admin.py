"""`python -m directory.admin`: the operators' command-line tool.

Every command but `seed-demo` and `generate-csv` talks to the running directory over gRPC
(DIRECTORY_ADDRESS, DIRECTORY_ADMIN_TOKEN), so that each action is validated and audited in one place.
`seed-demo` writes the synthetic academy straight into the database, then asks a running directory to
reload its address book (if none runs, the directory loads everything when it starts).

    python -m directory.admin create --nom Martin --prenom Camille --numen 11E... --naissance 17/05/1984 \
        --etablissement 0340001S --fonction enseignant --secours camille@example.org
    python -m directory.admin import export-rh.csv [--report rejets.csv]
    python -m directory.admin suspend|unsuspend|delete|restore|reset-first-login ADRESSE [--reason ...]
    python -m directory.admin alias ADRESSE ALIAS
    python -m directory.admin purge [--all]
    python -m directory.admin maintenance on --message "..." | off | status
    python -m directory.admin audit [--account ID] [--event auth.] [--limit 50]
    python -m directory.admin show ADRESSE
    python -m directory.admin seed-demo [--establishments 400] [--staff 5000] [--seed 2026]
    python -m directory.admin generate-csv FICHIER [--staff 200] [--encoding cp1252]
"""

from __future__ import annotations

import argparse
import csv
import getpass
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from directory.client import DirectoryClient, DirectoryClientError, NewAccount

console = Console()
BATCH = 100


def _client(args: argparse.Namespace) -> DirectoryClient:
    return DirectoryClient(args.address, operator=args.operator)


def cmd_create(args: argparse.Namespace) -> int:
    numen = args.numen or getpass.getpass("NUMEN : ")
    account = NewAccount(
        args.nom, args.prenom, numen, args.naissance, args.etablissement, args.fonction, args.secours
    )
    with _client(args) as client:
        _, message, _ = client.create_account(account)
    console.print(message)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from directory.importer import parse_hr_export

    data = Path(args.file).read_bytes()
    parsed = parse_hr_export(data)
    rejected = [(r.line, r.reason) for r in parsed.rejections]
    counts = {"CREATED": 0, "UPDATED": 0, "UNCHANGED": 0, "REJECTED": 0}
    requests = parsed.requests
    with (
        _client(args) as client,
        Progress(
            TextColumn("[bold]Import[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("import", total=len(requests))
        for start in range(0, len(requests), BATCH):
            batch = [
                NewAccount(
                    r.last_name,
                    r.first_name,
                    r.numen,
                    r.birth_date.isoformat(),
                    r.establishment_uai,
                    r.function,
                    r.recovery_address,
                    r.line,
                )
                for r in requests[start : start + BATCH]
            ]
            for line in client.import_accounts(batch, source=Path(args.file).name):
                counts[line.outcome] += 1
                if line.outcome == "REJECTED":
                    rejected.append((line.line, line.reason))
            progress.advance(task, len(batch))
    counts["REJECTED"] += len(parsed.rejections)
    rejected.sort()
    console.print(
        f"Créés : {counts['CREATED']} — mis à jour : {counts['UPDATED']} — "
        f"inchangés : {counts['UNCHANGED']} — "
        f"rejetés : {counts['REJECTED']} (encodages lus : {', '.join(sorted(parsed.encodings)) or '-'})"
    )
    if rejected:
        table = Table("Ligne", "Motif du rejet", title="Lignes rejetées")
        for line, reason in rejected[: args.show]:
            table.add_row(str(line), reason)
        console.print(table)
        if len(rejected) > args.show:
            console.print(f"… et {len(rejected) - args.show} autres (voir --report).")
    if args.report:
        with open(args.report, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(["ligne", "motif"])
            writer.writerows(rejected)
        console.print(f"Rapport des rejets : {args.report}")
    return 0 if not rejected else 2


def cmd_action(args: argparse.Namespace) -> int:
    with _client(args) as client:
        message, _ = client.admin(args.command, args.identifier, getattr(args, "reason", "") or "")
    console.print(message)
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    with _client(args) as client:
        message, _ = client.add_alias(args.identifier, args.alias)
    console.print(message)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    with _client(args) as client:
        accounts, tokens = client.purge_deleted(include_unexpired=args.all)
    console.print(f"Comptes purgés : {accounts} — jetons expirés supprimés : {tokens}")
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.state == "on":
            state = client.set_maintenance(True, args.message or "")
        elif args.state == "off":
            state = client.set_maintenance(False, "")
        else:
            state = client.maintenance()
    console.print(
        f"Maintenance : {'ACTIVE' if state.enabled else 'inactive'}"
        + (f" — « {state.message} » depuis {state.since}" if state.enabled else "")
    )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        entries = client.audit(args.account or "", args.event or "", args.limit)
    table = Table("date", "événement", "acteur", "adresse", "client", "résultat")
    for e in entries:
        table.add_row(e.at[:19], e.event, e.actor, e.address, e.client_address, e.outcome)
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        recipient = (
            client.resolve_recipient(client_address := args.identifier) if "@" in args.identifier else None
        )
        card = client.contact_card(args.identifier)
    if recipient is not None:
        console.print(f"{client_address} → {recipient.state} {recipient.mailbox_address}")
    if card is not None:
        console.print(
            f"{card.display_name} <{card.address}> — {card.function_label} — {card.establishment_name}"
            f" ({card.commune}, {card.departement_name})"
        )
        console.print(f"Aide : {card.help_contact}")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from common.config import get_settings
    from common.db import get_database
    from directory.demo import seed_demo
    from directory.notifier import RecordingNotifier
    from directory.service import Directory

    settings = get_settings()
    directory = Directory(get_database(), notifier=RecordingNotifier())
    with Progress(
        TextColumn("[bold]Académie synthétique[/bold]"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("seed", total=args.staff)
        summary = seed_demo(
            directory,
            establishments=args.establishments,
            staff=args.staff,
            seed=args.seed,
            demo_password=settings.demo_password,
            progress=lambda n: progress.advance(task, n),
        )
        progress.update(task, completed=args.staff)
    try:  # a running directory sees the new people now rather than at its next periodic reload
        with DirectoryClient(args.address, operator=args.operator, timeout=60) as client:
            client.reload_address_book()
    except DirectoryClientError:
        pass  # not running: it loads everything when it starts
    console.print(
        f"Académie SYNTHÉTIQUE : {summary['establishments']} établissements, "
        f"{summary['synthetic_added']} personnels ajoutés (0 si déjà chargée)."
    )
    console.print("Comptes de démonstration (données fictives) :")
    for demo, address in summary["demo"]:
        if demo.activated:
            console.print(
                f"  {address} — compte activé, mot de passe : variable DEMO_PASSWORD "
                f"({'valeur par défaut' if 'DEMO_PASSWORD' not in os.environ else 'définie'})"
            )
        else:
            console.print(f"  {address} — première connexion, NUMEN (fictif) : {demo.numen}")
    return 0


def cmd_generate_csv(args: argparse.Namespace) -> int:
    from directory import synthetic

    ests = synthetic.establishments(args.establishments, args.seed)
    people = list(synthetic.people(args.staff, ests, args.seed))
    text = synthetic.hr_export_csv(people)
    Path(args.file).write_bytes(text.encode(args.encoding, errors="replace"))
    console.print(f"{len(people)} lignes SYNTHÉTIQUES écrites dans {args.file} ({args.encoding}).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m directory.admin", description="Administration de l'annuaire."
    )
    parser.add_argument("--address", default=None, help="adresse gRPC de l'annuaire (DIRECTORY_ADDRESS)")
    parser.add_argument(
        "--operator", default=os.environ.get("USER", "operateur"), help="nom de l'opérateur (audit)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create", help="créer un compte")
    for name in ("nom", "prenom", "naissance", "etablissement", "fonction", "secours"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--numen", help="demandé sans écho s'il est omis (évite l'historique du shell)")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("import", help="importer un export RH (CSV UTF-8 ou Windows-1252)")
    p.add_argument("file")
    p.add_argument("--report", help="écrire les lignes rejetées dans ce fichier CSV")
    p.add_argument("--show", type=int, default=50, help="lignes rejetées affichées")
    p.set_defaults(func=cmd_import)

    for verb in ("suspend", "unsuspend", "delete", "restore", "reset-first-login"):
        p = sub.add_parser(verb)
        p.add_argument("identifier")
        if verb in ("suspend", "delete"):
            p.add_argument("--reason", default="")
        p.set_defaults(func=cmd_action)

    p = sub.add_parser("alias", help="ajouter un alias")
    p.add_argument("identifier")
    p.add_argument("alias")
    p.set_defaults(func=cmd_alias)

    p = sub.add_parser("purge", help="purger les comptes supprimés dont la rétention est écoulée")
    p.add_argument("--all", action="store_true", help="purger aussi les suppressions récentes")
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser("maintenance")
    p.add_argument("state", choices=("on", "off", "status"))
    p.add_argument("--message", default="")
    p.set_defaults(func=cmd_maintenance)

    p = sub.add_parser("audit")
    p.add_argument("--account")
    p.add_argument("--event")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("show", help="résoudre une adresse et afficher la fiche")
    p.add_argument("identifier")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("seed-demo", help="charger une académie synthétique et les comptes de démonstration")
    p.add_argument("--establishments", type=int, default=400)
    p.add_argument("--staff", type=int, default=5000)
    p.add_argument("--seed", type=int, default=2026)
    p.set_defaults(func=cmd_seed_demo)

    p = sub.add_parser("generate-csv", help="écrire un export RH synthétique")
    p.add_argument("file")
    p.add_argument("--staff", type=int, default=200)
    p.add_argument("--establishments", type=int, default=400)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--encoding", default="utf-8", choices=("utf-8", "cp1252"))
    p.set_defaults(func=cmd_generate_csv)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 on success, 1 on error, 2 when an import rejected lines."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DirectoryClientError as exc:
        console.print(f"[red]Erreur :[/red] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
