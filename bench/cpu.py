"""CPU time per component of the platform over a benchmark's window, read from /proc (Linux).

`CpuSampler().start()` snapshots the CPU time (user + system) of every process whose command line names
a platform component (a `python -m <stage>` service, FerretDB, RabbitMQ's Erlang VM, clamd);
`stop()` returns the seconds each component used since, summed over its processes. Shared components
(the database, the broker, clamd) count the work of anything else on the machine that uses them too.
`CpuSampler({pid: label})` names given processes explicitly (the benchmark's private FerretDB); any other
FerretDB is then counted as "ferretdb (shared)".
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
STAGES = ("directory", "ingest", "scan", "spam", "delivery", "notify", "webmail")


def _component(cmdline: list[str]) -> str | None:
    if not cmdline:
        return None
    exe = Path(cmdline[0]).name
    if "-m" in cmdline:
        module = cmdline[cmdline.index("-m") + 1] if cmdline.index("-m") + 1 < len(cmdline) else ""
        if module in STAGES:
            return module
    if exe == "ferretdb":
        return "ferretdb"
    if exe == "beam.smp":
        return "rabbitmq"
    if exe == "clamd":
        return "clamd"
    return None


def process_times(pid: int) -> tuple[float, float]:
    """The user and system CPU seconds process `pid` has used so far (raises OSError once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def _snapshot(labels: dict[int, str]) -> dict[int, tuple[str, float]]:
    seen: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            name = labels.get(int(entry.name)) or _component([part for part in cmdline if part])
            if name is None:
                continue
            if name == "ferretdb" and labels and int(entry.name) not in labels:
                name = "ferretdb (shared)"
            seen[int(entry.name)] = (name, sum(process_times(int(entry.name))))
        except OSError:
            continue
    return seen


class CpuSampler:
    def __init__(self, labels: dict[int, str] | None = None):
        self._labels = dict(labels or {})

    def start(self) -> CpuSampler:
        self._before = _snapshot(self._labels)
        return self

    def stop(self) -> dict[str, float]:
        after = _snapshot(self._labels)
        used: dict[str, float] = {}
        for pid, (name, seconds) in after.items():
            before = self._before.get(pid, (name, 0.0))[1]
            used[name] = used.get(name, 0.0) + max(0.0, seconds - before)
        return used
