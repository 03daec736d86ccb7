"""`python -m spam.admin`: the operators' commands for the spam model.

    list                      model versions, newest first, the active one marked
    activate VERSION          make VERSION the model of every worker (they reload within
                              SPAM_MODEL_POLL_SECONDS)
    rollback                  return to the version active before the current one
    retrain [--activate]      retrain from scratch on the corpus `-1` sets plus the reports users agree on
    publish FILE [--activate] store an artifact written by `python -m spam.train --no-publish`
    publish-feedback          fold the counted reports into a new version and activate it
    feedback-stats            reports by label, pending publication, top reporters
    lists USER                a user's sender allow/block lists

Every command talks to the database named by MONGODB_URL / DATABASE_NAME.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common.db import get_database
from spam.classifier import SpamClassifier
from spam.exceptions import SpamError
from spam.feedback import FeedbackLearner
from spam.lists import SenderLists
from spam.model import SpamModel
from spam.registry import ModelRegistry

console = Console()


def _fmt(value: object, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else ("" if value is None else str(value))


def cmd_list(registry: ModelRegistry, args: argparse.Namespace) -> int:
    table = Table(title="Versions du modèle anti-spam")
    for column in (
        "",
        "version",
        "type",
        "parent",
        "créée",
        "AUC CV",
        "AUC test",
        "rappel 0,1 %",
        "signalements",
    ):
        table.add_column(column)
    for document in registry.versions(limit=args.limit):
        summary = document.get("summary", {})
        table.add_row(
            "*" if document["active"] else "",
            document["_id"],
            document.get("kind", ""),
            _fmt(document.get("parent")),
            f"{document['created_at']:%Y-%m-%d %H:%M}",
            _fmt(summary.get("cv_auc")),
            _fmt(summary.get("test_auc")),
            _fmt(summary.get("test_recall_at_fpr_0_1pct"), 3),
            _fmt(summary.get("feedback_reports")),
        )
    console.print(table)
    return 0


def cmd_activate(registry: ModelRegistry, args: argparse.Namespace) -> int:
    registry.activate(args.version)
    console.print(f"version active : {args.version}")
    return 0


def cmd_rollback(registry: ModelRegistry, args: argparse.Namespace) -> int:
    console.print(f"version active : {registry.rollback()}")
    return 0


def cmd_retrain(registry: ModelRegistry, args: argparse.Namespace) -> int:
    from spam.train import metrics_table, save_local, train_on_corpus
    from spam.training import TrainingParams

    extra = []
    if not args.no_feedback and registry.active_version() is not None:
        learner = FeedbackLearner(registry.db, SpamClassifier(registry=registry))
        extra = learner.consensus_samples()
    console.print(f"signalements retenus (consensus) : {len(extra)}")
    model, report = train_on_corpus(TrainingParams(seed=args.seed), extra=extra)
    save_local(model)
    registry.publish(model, kind="retrained")
    console.print(metrics_table(report, model))
    if args.activate:
        registry.activate(model.version)
    console.print(f"version {'activée' if args.activate else 'publiée'} : {model.version}")
    return 0


def cmd_publish(registry: ModelRegistry, args: argparse.Namespace) -> int:
    model = SpamModel.from_bytes(Path(args.file).read_bytes())
    registry.publish(model)
    if args.activate:
        registry.activate(model.version)
    console.print(f"version {'activée' if args.activate else 'publiée'} : {model.version}")
    return 0


def cmd_publish_feedback(registry: ModelRegistry, args: argparse.Namespace) -> int:
    learner = FeedbackLearner(registry.db, SpamClassifier(registry=registry))
    version = learner.publish(activate=True)
    console.print(f"nouvelle version active : {version}" if version else "aucun signalement en attente")
    return 0


def cmd_feedback_stats(registry: ModelRegistry, args: argparse.Namespace) -> int:
    learner = FeedbackLearner(registry.db, SpamClassifier(registry=registry))
    console.print_json(json.dumps(learner.stats(), default=str))
    return 0


def cmd_lists(registry: ModelRegistry, args: argparse.Namespace) -> int:
    table = Table(title=f"Listes d'expéditeurs de {args.user}")
    table.add_column("expéditeur")
    table.add_column("liste")
    table.add_column("modifié")
    for entry in SenderLists(registry.db).entries(args.user):
        table.add_row(entry["sender"], entry["list"], f"{entry['updated_at']:%Y-%m-%d %H:%M}")
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of `python -m spam.admin`."""
    parser = argparse.ArgumentParser(
        prog="python -m spam.admin",
        description="Operator commands for the spam model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list model versions")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=cmd_list)
    activate = commands.add_parser("activate", help="activate a version")
    activate.add_argument("version")
    activate.set_defaults(run=cmd_activate)
    commands.add_parser("rollback", help="return to the previous active version").set_defaults(
        run=cmd_rollback
    )
    retrain = commands.add_parser("retrain", help="retrain on the corpus and agreed reports")
    retrain.add_argument("--activate", action="store_true")
    retrain.add_argument("--no-feedback", action="store_true", help="corpus only")
    retrain.add_argument("--seed", type=int, default=42)
    retrain.set_defaults(run=cmd_retrain)
    publish = commands.add_parser("publish", help="publish a local artifact")
    publish.add_argument("file")
    publish.add_argument("--activate", action="store_true")
    publish.set_defaults(run=cmd_publish)
    commands.add_parser("publish-feedback", help="fold reports into a new version").set_defaults(
        run=cmd_publish_feedback
    )
    commands.add_parser("feedback-stats", help="feedback counts").set_defaults(run=cmd_feedback_stats)
    lists = commands.add_parser("lists", help="a user's sender lists")
    lists.add_argument("user")
    lists.set_defaults(run=cmd_lists)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m spam.admin`."""
    args = build_parser().parse_args(argv)
    registry = ModelRegistry(get_database())
    registry.ensure_indexes()
    try:
        return args.run(registry, args)
    except SpamError as exc:
        console.print(f"[red]{exc}[/]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
