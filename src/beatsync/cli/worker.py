"""``beatsync worker``: a Celery worker that runs the jobs of the distributed mode."""

from __future__ import annotations

import argparse
import sys

from ._common import EXIT_INTERNAL, EXIT_OK, SubParsers, positive_int

__all__ = ["add_worker"]


def add_worker(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run jobs taken from the queue (the distributed mode)",
        description="Run a Celery worker: it takes job ids from Redis (BEATSYNC_REDIS_URL) and "
        "runs each job against the shared database (BEATSYNC_DATABASE_URL) and storage "
        "(BEATSYNC_STORAGE, BEATSYNC_S3_*). Start the API with BEATSYNC_QUEUE=celery. SIGTERM "
        "lets running jobs finish; every option has a BEATSYNC_* environment variable "
        "(docs/configuration.md).",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        help="jobs run at once, one process each (BEATSYNC_WORKERS, default one per core)",
    )
    p.add_argument(
        "--queues",
        type=_names,
        help="comma-separated queues to take jobs from (BEATSYNC_CELERY_QUEUE, default beatsync)",
    )
    p.add_argument(
        "--ping",
        action="store_true",
        help="run no worker: exit 0 when a worker on this host answers a ping through the "
        "broker within 5 s, else 5 (a container's health check)",
    )
    p.set_defaults(handler=_run_worker, configures_logging=True)


def _run_worker(args: argparse.Namespace) -> int:
    from beatsync.service.config import load_settings
    from beatsync.service.jobs.celery_app import ping_local_workers, run_worker

    settings = load_settings()
    if args.ping:
        answered = ping_local_workers(settings)
        if not answered:
            print("beatsync: no worker on this host answered a ping", file=sys.stderr)
            return EXIT_INTERNAL
        print("\n".join(answered))
        return EXIT_OK
    return run_worker(settings, concurrency=args.concurrency, queues=args.queues or ())


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("at least one queue name")
    return names
