"""`make bench-peak`: a burst of mail against the scan stage, autoscaled on queue depth as KEDA would.

    .venv/bin/python bench/bench_peak.py [--messages 1000] [--burst-seconds 10] [--max-workers 4]

Two runs of the same burst on a scratch database, each on a RabbitMQ virtual host of its own (no other
test's consumer takes its events, no purge elsewhere empties its queue):

- "one process": a single scan process throughout (no autoscaling), the baseline;
- "autoscaled": one scan process at first; every second the depth of `scan.mail.received` (ready
  messages, `queue_declare(passive=True)`, what KEDA's AMQP trigger reads) is sampled and scan processes
  are started up to what KEDA's HPA would ask for: ceil(depth / threshold), at least 1, at most
  --max-workers (a development machine has few cores; the cluster's maxReplicaCount is 20). The
  threshold is the `value` of the rabbitmq trigger of the scan ScaledObject, read from
  deploy/components/keda/scaledobjects.yaml, so the simulation and the cluster cannot drift apart. As
  with the ScaledObject's 5-minute scale-down stabilisation, no process is removed during a run.

`--messages` distinct raw messages are stored once (with the platform's BlobStore, as ingest stores
them). Each run forgets the previous run's verdicts, starts its scan process(es)
(WORKER_COUNT=--worker-count: one pod's concurrency), publishes one `mail.received` per message at a
steady rate over `--burst-seconds`, and ends when every message has a verdict or `--timeout` seconds
after the burst. The series are printed, saved to STATE_DIR/bench/peak/peak.json and drawn into
docs/operations-peak.png (matplotlib). The scan processes, virtual hosts and the database are removed
afterwards. Needs the infrastructure (RabbitMQ with its management plugin, clamd, the database).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

import yaml  # noqa: E402

# nameko (imported by common.bus) imports eventlet, which warns on import; the bench never uses it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

SCALED_OBJECTS = ROOT / "deploy" / "components" / "keda" / "scaledobjects.yaml"
QUEUE = "scan.mail.received"


def keda_scan_threshold() -> int:
    """The target depth per scan replica: the scan ScaledObject's rabbitmq trigger `value`."""
    for obj in yaml.safe_load_all(SCALED_OBJECTS.read_text()):
        if obj and obj["kind"] == "ScaledObject" and obj["spec"]["scaleTargetRef"]["name"] == "scan":
            for trigger in obj["spec"]["triggers"]:
                if trigger["type"] == "rabbitmq" and trigger["metadata"]["queueName"] == QUEUE:
                    return int(trigger["metadata"]["value"])
    raise SystemExit(f"no rabbitmq trigger on {QUEUE} in {SCALED_OBJECTS}")


def desired_workers(depth: int, threshold: int, maximum: int) -> int:
    """What KEDA's HPA asks for on the queue metric alone (QueueLength: target `threshold` per replica)."""
    return max(1, min(maximum, math.ceil(depth / threshold)))


def make_message(index: int) -> bytes:
    """A plain staff mail of about 2 KB, different for each index."""
    body = (f"Bonjour,\r\nvoici le compte rendu n° {index} du conseil pédagogique.\r\n" * 25).encode()
    return (
        b"From: Camille Martin <camille.martin@ac-montpellier.fr>\r\n"
        b"To: Louis Garcia <louis.garcia@ac-montpellier.fr>\r\n"
        + f"Subject: Compte rendu {index}\r\n".encode()
        + b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
        + f"Message-ID: <peak-{index}@ac-montpellier.fr>\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + body
    )


def store_messages(database, message_ids: list[str]) -> None:
    """Store message i under message_ids[i] with the platform's BlobStore, as ingest does (in parallel)."""
    from common.db import BlobStore

    blobs = BlobStore(database)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda pair: blobs.put(pair[1], make_message(pair[0])), enumerate(message_ids)))


class ScanPool:
    """The scan processes of the run (one per simulated pod)."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir, self.processes = env, log_dir, []
        log_dir.mkdir(parents=True, exist_ok=True)

    def scale_to(self, count: int) -> None:
        from tests.helpers import ServiceProcess, free_port

        while len(self.processes) < count:
            port = free_port()
            self.processes.append(
                ServiceProcess(
                    ["-m", "scan"],
                    env={**self.env, "SCAN_METRICS_PORT": str(port)},
                    health_port=port,
                    log_path=self.log_dir / f"scan-{len(self.processes) + 1}.log",
                )
            )

    def ready(self) -> int:
        from tests.helpers import healthz

        return sum(1 for p in self.processes if healthz(p.health_port) == 200)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def publish_burst(amqp_url: str, message_ids: list[str], seconds: float, done: threading.Event) -> None:
    """One mail.received per message, paced evenly over `seconds`, from a few publishing threads."""
    from common.bus import EventPublisher

    publisher = EventPublisher(source="bench-peak", amqp_url=amqp_url)
    start = time.monotonic()
    interval = seconds / max(1, len(message_ids))

    def publish(index: int) -> None:
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        publisher.publish(
            "mail.received",
            {
                "message_id": message_ids[index],
                "sender": "camille.martin@ac-montpellier.fr",
                "recipients": ["louis.garcia@ac-montpellier.fr"],
                "size": 2048,
                "origin": "mx",
                "received_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            },
        )

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(publish, range(len(message_ids))))
    finally:
        publisher.close()
        done.set()


def run_burst(
    args, database, message_ids: list[str], threshold: int, max_workers: int, label: str, out_dir: Path
) -> dict:
    """One burst on a fresh virtual host; returns its summary with the sampled series."""
    from kombu import Connection

    from tests.deploy.live import private_vhost

    # The messages are scanned again from scratch: forget the verdicts of an earlier run.
    database.scan_verdicts.drop()
    database.processed_events.drop()
    samples: list[dict] = []
    with private_vhost("webmail-bench-peak") as amqp_url:
        pool = None
        try:
            env = {
                "AMQP_URL": amqp_url,
                "DATABASE_NAME": database.name,
                "WORKER_COUNT": str(args.worker_count),
                "LOG_LEVEL": "WARNING",
            }
            pool = ScanPool(env, out_dir / label.replace(" ", "-"))
            pool.scale_to(1)
            for process in pool.processes:
                process.wait_healthy()
            published = threading.Event()
            publisher = threading.Thread(
                target=publish_burst, args=(amqp_url, message_ids, args.burst_seconds, published), daemon=True
            )
            with Connection(amqp_url) as conn:
                channel = conn.default_channel
                start = time.monotonic()
                publisher.start()
                while True:
                    elapsed = time.monotonic() - start
                    _, depth, consumers = channel.queue_declare(QUEUE, passive=True)
                    verdicts = database.scan_verdicts.count_documents({})
                    wanted = desired_workers(depth, threshold, max_workers)
                    if wanted > len(pool.processes):
                        pool.scale_to(wanted)
                    sample = {
                        "t": round(elapsed, 1),
                        "depth": depth,
                        "workers": pool.ready(),
                        "started": len(pool.processes),
                        "consumers": consumers,
                        "verdicts": verdicts,
                    }
                    samples.append(sample)
                    print(
                        f"[{label}] t={sample['t']:6.1f}s depth={depth:5d}"
                        f" scan processes={sample['workers']}/{sample['started']} verdicts={verdicts}",
                        flush=True,
                    )
                    if published.is_set() and verdicts >= args.messages and depth == 0:
                        break
                    if elapsed > args.burst_seconds + args.timeout:
                        print(f"[{label}] time is up: {depth} messages still waiting", flush=True)
                        break
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - start - elapsed)))
                channel.queue_purge(QUEUE)
            publisher.join(30)
        finally:
            # Before the virtual host goes: a consumer that loses its broker stops slowly.
            if pool is not None:
                pool.stop()

    peak = max(samples, key=lambda s: s["depth"])
    drained = samples[-1]["t"] if samples[-1]["verdicts"] >= args.messages else None
    return {
        "label": label,
        "max_workers": max_workers,
        "peak_depth": peak["depth"],
        "peak_at": peak["t"],
        "drained_at": drained,
        "left_at_end": samples[-1]["depth"],
        "messages_per_second": round(samples[-1]["verdicts"] / samples[-1]["t"], 1)
        if samples[-1]["t"]
        else None,
        "samples": samples,
    }


def draw(runs: list[dict], threshold: int, max_workers: int, path: Path, title: str) -> None:
    """The backlog of each run over time, and the scan processes of the autoscaled one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"autoscaled": "#1f5fa8", "one process": "#9a9a9a"}
    fig, depth_axis = plt.subplots(figsize=(8, 4.2), dpi=100)
    for run in runs:
        t = [s["t"] for s in run["samples"]]
        depth_axis.plot(
            t,
            [s["depth"] for s in run["samples"]],
            color=colours.get(run["label"], "#1f5fa8"),
            linewidth=2 if run["label"] == "autoscaled" else 1.5,
            linestyle="-" if run["label"] == "autoscaled" else "--",
            label=f"depth, {run['label']}",
        )
    depth_axis.axhline(
        threshold, color="#1f5fa8", linestyle=":", linewidth=1, label=f"KEDA threshold ({threshold})"
    )
    depth_axis.set_xlabel("seconds since the burst started")
    depth_axis.set_ylabel("ready messages in scan.mail.received")
    depth_axis.set_ylim(bottom=0)
    workers_axis = depth_axis.twinx()
    scaled = next(run for run in runs if run["label"] == "autoscaled")
    workers_axis.step(
        [s["t"] for s in scaled["samples"]],
        [s["workers"] for s in scaled["samples"]],
        where="post",
        color="#d9822b",
        label="scan processes (autoscaled)",
    )
    workers_axis.set_ylabel("scan processes ready")
    workers_axis.set_ylim(0, max_workers + 1)
    handles, labels = depth_axis.get_legend_handles_labels()
    more_handles, more_labels = workers_axis.get_legend_handles_labels()
    depth_axis.legend(handles + more_handles, labels + more_labels, loc="upper right", fontsize=8)
    depth_axis.set_title(title, fontsize=10)
    depth_axis.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--max-workers", type=int, default=4, help="largest number of scan processes")
    parser.add_argument("--worker-count", type=int, default=4, help="WORKER_COUNT of each scan process")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a run may take after its burst")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run with one scan process")
    parser.add_argument("--png", default=str(ROOT / "docs" / "operations-peak.png"))
    args = parser.parse_args(argv)

    from common.config import get_settings
    from common.db import BlobStore, get_client

    threshold = keda_scan_threshold()
    out_dir = get_settings().state_path / "bench" / "peak"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"threshold: {threshold} ready messages per scan process (deploy/components/keda/scaledobjects.yaml)"
    )
    client = get_client()
    database = client[f"bench_peak_{uuid.uuid4().hex[:8]}"]
    message_ids = [uuid.uuid4().hex for _ in range(args.messages)]
    stored_at = time.monotonic()
    runs = []
    try:
        store_messages(database, message_ids)
        assert BlobStore(database).get(message_ids[-1]) == make_message(len(message_ids) - 1)
        print(f"{args.messages} messages stored in {time.monotonic() - stored_at:.0f} s", flush=True)
        if not args.no_baseline:
            runs.append(run_burst(args, database, message_ids, threshold, 1, "one process", out_dir))
        runs.append(
            run_burst(args, database, message_ids, threshold, args.max_workers, "autoscaled", out_dir)
        )
    finally:
        client.drop_database(database.name)
    summary = {
        "messages": args.messages,
        "burst_seconds": args.burst_seconds,
        "threshold": threshold,
        "worker_count": args.worker_count,
        "runs": runs,
    }
    (out_dir / "peak.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = (
        f"{args.messages} messages in {args.burst_seconds:g} s; a scan process per {threshold} waiting"
        f" (KEDA formula), at most {args.max_workers}"
    )
    draw(runs, threshold, args.max_workers, Path(args.png), title)
    print()
    print(f"{'run':<12} {'peak depth':>10} {'at (s)':>7} {'drained at (s)':>15} {'left':>6} {'msg/s':>6}")
    for run in runs:
        drained = f"{run['drained_at']:.0f}" if run["drained_at"] is not None else "-"
        print(
            f"{run['label']:<12} {run['peak_depth']:>10} {run['peak_at']:>7.0f} {drained:>15}"
            f" {run['left_at_end']:>6} {run['messages_per_second']:>6}"
        )
    print(f"series: {out_dir / 'peak.json'}; figure: {args.png}")
    return 0 if runs[-1]["drained_at"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
