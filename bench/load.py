"""Service load benchmark: status reads under load while jobs run, and big concurrent uploads.

Two measurements against a real ``beatsync serve`` (embedded mode, two worker processes):

1. **Status reads.** While two jobs run at all times (the class video of a generated pair is
   synced again and again with different nudges, so the result cache never answers), an
   open-loop client sends ``GET /api/v1/jobs/{id}`` at a fixed rate (500 per second by default)
   over keep-alive connections. Each latency is measured from the moment the request was
   *scheduled*, not sent, so a server that falls behind is charged for the wait (no
   coordinated omission). Bar: p99 ≤ 20 ms.
2. **Uploads.** Ten clients each stream a 500 MiB tus upload at the same time, in 8 MiB
   PATCHes. The server's memory (its process and its workers, resident set) is sampled every
   100 ms. Bar: flat — the peak stays within 100 MB of the idle server's.

The floor of the first measurement is the same read schedule against ``/api/health`` (no
database) in the same run, so the table shows what the job lookup itself costs.

    python bench/load.py [--rate 500] [--seconds 20] [--uploads 10] [--upload-mib 500]

Results go to stdout and to the load section of ``bench/RESULTS.md``; the exit status is 1
when a bar is missed. The rate limits are raised for the run (a benchmark is one client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "load"
MEDIA = BENCH / ".media" / "load"
RESULTS = BENCH / "RESULTS.md"
SECTION = "load"

P99_MS = 20.0
FLAT_MB = 100.0
CONNECTIONS = 16


# --- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "BEATSYNC_DATA_DIR": str(data_dir),
            "BEATSYNC_MIN_FREE_DISK_MB": "0",
            "BEATSYNC_RATE_LIMIT_PER_OWNER": "10000000",
            "BEATSYNC_RATE_LIMIT_PER_ADDRESS": "10000000",
            "BEATSYNC_SESSIONS_PER_ADDRESS_PER_MINUTE": "10000000",
            "BEATSYNC_MAX_ACTIVE_JOBS_PER_ADDRESS": "10000000",
            # One owner sends all the uploads: ten of 500 MiB pass the default quota.
            "BEATSYNC_MAX_STORED_BYTES_PER_OWNER": str(1 << 40),
            "BEATSYNC_MAX_UPLOADS_PER_OWNER": "100000",
            "BEATSYNC_MAX_RUNNING_JOBS_PER_OWNER": "100",
            "BEATSYNC_MAX_DAILY_JOBS_PER_OWNER": "100000",
            "BEATSYNC_LOG_LEVEL": "WARNING",
        }
        self.log = (data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beatsync", "serve", "--port", str(self.port), "--workers", "2"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def rss_mb(self) -> float:
        """Resident memory of the API process and every process under it (MB)."""
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 1e6

    def api_rss_mb(self) -> float:
        """Resident memory of the API process alone (MB): the one that receives uploads."""
        return psutil.Process(self.process.pid).memory_info().rss / 1e6

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


# --- keeping two jobs running ----------------------------------------------------------------


def _pair() -> tuple[Path, Path]:
    from beatsync.testkit.cases import build_case
    from beatsync.testkit.catalog import case_named

    built = build_case(case_named("drift-plus120-reverb"), MEDIA)
    return built.dance, built.bgm


def _upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        answer = client.post("/api/v1/uploads", files={"file": (path.name, handle)})
    answer.raise_for_status()
    return str(answer.json()["id"])


class JobLoad:
    """Two jobs running at every moment, until stopped; how many finished."""

    def __init__(self, server: Server, token: str, dance: str, bgm: str) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.dance, self.bgm = dance, bgm
        self.stopping = threading.Event()
        self.finished = 0
        self.running_samples: list[int] = []
        self.nudge = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _start_one(self) -> str:
        self.nudge += 1
        options = {"nudge_ms": float(self.nudge % 4000)}
        body = {"dance_upload_id": self.dance, "bgm_upload_id": self.bgm, "options": options}
        answer = self.client.post("/api/v1/jobs", json=body)
        answer.raise_for_status()
        return str(answer.json()["id"])

    def _run(self) -> None:
        active = [self._start_one(), self._start_one()]
        while not self.stopping.is_set():
            running = 0
            for index, job_id in enumerate(active):
                status = self.client.get(f"/api/v1/jobs/{job_id}").json()["status"]
                if status in ("succeeded", "failed", "canceled"):
                    self.finished += status == "succeeded"
                    active[index] = self._start_one()
                running += status == "running"
            self.running_samples.append(running)
            self.stopping.wait(0.2)
        for job_id in active:
            self.client.post(f"/api/v1/jobs/{job_id}/cancel")

    def wait_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.running_samples[-1:] != [2]:
            if time.monotonic() > deadline:
                raise RuntimeError("the two jobs did not start")
            time.sleep(0.1)


# --- the open-loop reader --------------------------------------------------------------------


async def _connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def _open_loop(port: int, raw: bytes, rate: float, seconds: float) -> dict[str, Any]:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await _connection(port))
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    finished = 0.0
    start = loop.time() + 0.1
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        nonlocal errors
        connection = await pool.get()
        try:
            status = await _request(*connection, raw)
            if status != 200:
                errors += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            connection = await _connection(port)
        finally:
            pool.put_nowait(connection)
        latencies.append((loop.time() - scheduled) * 1000.0)
        nonlocal finished
        finished = loop.time()

    tasks = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()
    return {
        "requests": total,
        "errors": errors,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
        "achieved_rps": total / max(finished - start, 1e-9),
    }


def read_load(port: int, path: str, token: str, rate: float, seconds: float) -> dict[str, Any]:
    raw = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    return asyncio.run(_open_loop(port, raw, rate, seconds))


# --- concurrent uploads ----------------------------------------------------------------------


def _stream_upload(url: str, token: str, size: int, seed: int, failures: list[str]) -> None:
    block = os.urandom(1 << 20) if seed < 0 else bytes([seed % 251]) * (1 << 20)
    chunk = 8 << 20
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        created = client.post("/api/v1/tus", headers={"Upload-Length": str(size)})
        if created.status_code != 201:
            failures.append(f"create: {created.status_code} {created.text[:200]}")
            return
        location = created.headers["location"]
        offset = 0
        while offset < size:
            length = min(chunk, size - offset)

            def body(length: int = length) -> Any:
                left = length
                while left:
                    piece = block[: min(len(block), left)]
                    left -= len(piece)
                    yield piece

            answer = client.patch(
                location,
                content=body(),
                headers={
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                },
            )
            if answer.status_code != 204:
                failures.append(f"patch: {answer.status_code} {answer.text[:200]}")
                return
            offset = int(answer.headers["upload-offset"])


def upload_load(server: Server, token: str, count: int, size: int) -> dict[str, Any]:
    idle = [server.api_rss_mb() for _ in range(5)]
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(server.api_rss_mb())
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    failures: list[str] = []
    started = time.monotonic()
    clients = [
        threading.Thread(target=_stream_upload, args=(server.url, token, size, i, failures))
        for i in range(count)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    return {
        "uploads": count,
        "size_mib": size / (1 << 20),
        "failures": failures,
        "seconds": elapsed,
        "throughput_mb_s": count * size / 1e6 / elapsed,
        "idle_rss_mb": statistics.median(idle),
        "peak_rss_mb": max(samples) if samples else float("nan"),
    }


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    reads_ok: bool
    uploads_ok: bool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--upload-mib", type=int, default=500)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    MEDIA.mkdir(parents=True, exist_ok=True)
    dance_path, bgm_path = _pair()
    server = Server(OUT)
    try:
        token = httpx.post(f"{server.url}/api/v1/sessions").json()["token"]
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            dance, bgm = _upload(client, dance_path), _upload(client, bgm_path)
        jobs = JobLoad(server, token, dance, bgm)
        jobs.thread.start()
        jobs.wait_running()
        job_path = f"/api/v1/jobs/{jobs._start_one()}"
        floor = read_load(server.port, "/api/health", token, args.rate, args.seconds)
        reads = read_load(server.port, job_path, token, args.rate, args.seconds)
        jobs.stopping.set()
        jobs.thread.join()
        busy = sum(s == 2 for s in jobs.running_samples) / max(len(jobs.running_samples), 1)
        uploads = upload_load(server, token, args.uploads, args.upload_mib << 20)
    finally:
        server.stop()
        shutil.rmtree(OUT / "files", ignore_errors=True)
        shutil.rmtree(OUT / "spool", ignore_errors=True)

    verdict = Verdict(
        reads_ok=reads["p99_ms"] <= P99_MS and reads["errors"] == 0,
        uploads_ok=not uploads["failures"]
        and uploads["peak_rss_mb"] - uploads["idle_rss_mb"] <= FLAT_MB,
    )
    section = _section(args, floor, reads, busy, jobs.finished, uploads, verdict)
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(BENCH))
        from accuracy import write_section

        write_section(RESULTS, SECTION, section)
        print(f"wrote the load section of {RESULTS}")
    return 0 if verdict.reads_ok and verdict.uploads_ok else 1


def _section(
    args: argparse.Namespace,
    floor: dict[str, Any],
    reads: dict[str, Any],
    busy: float,
    finished: int,
    uploads: dict[str, Any],
    verdict: Verdict,
) -> str:
    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"| {name} | {r['requests']} | {r['errors']} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} |"
        )

    growth = uploads["peak_rss_mb"] - uploads["idle_rss_mb"]
    return "\n".join(
        [
            "## Service load",
            "",
            f"`python bench/load.py` on {dt.date.today().isoformat()}, {os.cpu_count()} cores: "
            f"`beatsync serve` with 2 worker processes; reads at {args.rate:g}/s for "
            f"{args.seconds:g} s over {CONNECTIONS} keep-alive connections, latency from the "
            "scheduled send time.",
            "",
            "| Reads | Requests | Errors | p50 (ms) | p99 (ms) | Max (ms) |",
            "| --- | --- | --- | --- | --- | --- |",
            row("floor: `GET /api/health`", floor),
            row("`GET /api/v1/jobs/{id}` while 2 jobs run", reads),
            "",
            f"Two jobs were running in {busy:.0%} of the samples taken during the reads "
            f"({finished} jobs finished). Bar p99 ≤ {P99_MS:g} ms: "
            f"{'PASS' if verdict.reads_ok else 'FAIL'}.",
            "",
            "| Uploads | Each (MiB) | Seconds | Throughput (MB/s) | API RSS idle (MB) | "
            "API RSS peak (MB) | Growth (MB) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {uploads['uploads']} concurrent tus | {uploads['size_mib']:.0f} | "
            f"{uploads['seconds']:.1f} | {uploads['throughput_mb_s']:.0f} | "
            f"{uploads['idle_rss_mb']:.0f} | {uploads['peak_rss_mb']:.0f} | {growth:.0f} |",
            "",
            f"Failures: {len(uploads['failures'])}. Bar flat memory (growth ≤ {FLAT_MB:g} MB): "
            f"{'PASS' if verdict.uploads_ok else 'FAIL'}.",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
