"""Request bodies and connections on a real uvicorn: credentials before bodies, JSON bodies
capped while they stream, idle bodies and heads let go, shutdowns answered in words."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from beatsync.service.config import Settings

if TYPE_CHECKING:
    # A name only: at run time "conftest" can be another folder's, by which tests run first.
    from conftest import LiveServer

HUGE = 200 * 1024 * 1024


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer (status, headers, body) read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    size = int(headers.get("content-length", "0"))
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def problem(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/problem+json", (status, body)
    document: dict[str, Any] = json.loads(body)
    assert document["status"] == status
    return document


def head(method: str, path: str, *, token: str | None = None, **extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def live(make_live: Callable[..., LiveServer], settings: Settings) -> LiveServer:
    return make_live(settings)


@pytest.mark.parametrize("token", [None, "bst_not-a-token-anyone-was-given"])
def test_a_body_without_a_valid_token_is_refused_before_it_is_read(
    live: LiveServer, token: str | None
) -> None:
    with live.connect() as sock:
        # Only the head: a server that reads the body first never answers.
        sock.sendall(head("POST", "/api/v1/jobs", token=token, Content_Length=str(HUGE)))
        status, headers, body = read_answer(sock)
    assert status == 401
    assert problem(status, headers, body)["code"] == "UNAUTHORIZED"


# A JSON route with a small body; a job's creation and its frames have a cap of their own.
RENDER = "/api/v1/jobs/job_x/render"


def test_a_declared_json_body_over_the_cap_is_refused_unread(live: LiveServer) -> None:
    token = live.token()
    with live.connect() as sock:
        sock.sendall(head("POST", RENDER, token=token, Content_Length=str(HUGE)))
        status, headers, body = read_answer(sock)
    assert status == 413
    document = problem(status, headers, body)
    assert document["code"] == "REQUEST_TOO_LARGE"
    assert document["max_bytes"] == live.settings.max_json_body_bytes == 64 * 1024


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/job_x/frames"])
def test_a_job_body_has_the_job_cap(live: LiveServer, path: str) -> None:
    token = live.token()
    with live.connect() as sock:
        sock.sendall(head("POST", path, token=token, Content_Length=str(HUGE)))
        status, headers, body = read_answer(sock)
    assert status == 413
    document = problem(status, headers, body)
    assert document["max_bytes"] == live.settings.max_job_request_bytes == 8 * 1024 * 1024


def test_a_chunked_json_body_is_refused_as_it_passes_the_cap(live: LiveServer) -> None:
    token = live.token()
    cap = live.settings.max_json_body_bytes
    piece = b"[" + b" " * 8190 + b"]"
    with live.connect() as sock:
        sock.sendall(head("POST", RENDER, token=token, Transfer_Encoding="chunked"))
        sent = 0
        # One piece more than the cap holds, and no last chunk: the answer must come anyway.
        while sent <= cap:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
        status, headers, body = read_answer(sock)
    assert status == 413
    assert problem(status, headers, body)["code"] == "REQUEST_TOO_LARGE"


def test_json_bodies_within_the_cap_reach_their_route(live: LiveServer) -> None:
    token = live.token()
    payload = json.dumps({"dance_upload_id": "upl_missing", "bgm_upload_id": "upl_gone"})
    with live.connect() as sock:
        sock.sendall(
            head("POST", "/api/v1/jobs", token=token, Content_Length=str(len(payload)))
            + payload.encode()
        )
        status, headers, body = read_answer(sock)
    assert status == 404
    assert "dance_upload_id: no upload upl_missing" in problem(status, headers, body)["detail"]


def test_a_request_head_that_never_ends_is_cut_off(
    make_live: Callable[..., LiveServer], make_settings: Callable[..., Settings]
) -> None:
    live = make_live(make_settings(header_timeout_s=0.5))
    with live.connect(timeout=20) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: test\r\n")
        # The server closes the connection: recv sees the end of the stream, not a timeout.
        assert sock.recv(1024) == b""
    with live.connect() as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_answer(sock)[0] == 200


def test_an_idle_resumable_upload_body_is_let_go_and_keeps_what_came(
    make_live: Callable[..., LiveServer], make_settings: Callable[..., Settings]
) -> None:
    live = make_live(make_settings(body_idle_timeout_s=0.5))
    token = live.token()
    with live.connect() as sock:
        sock.sendall(
            b"POST /api/v1/tus HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\n"
            b"Upload-Length: 1000\r\nContent-Length: 0\r\n"
            + f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        status, headers, _ = read_answer(sock)
        assert status == 201
        location = headers["location"]
    with live.connect(timeout=20) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: 1000\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
            + b"x" * 10
        )
        status, headers, _ = read_answer(sock)
    assert status == 204
    assert headers["upload-offset"] == "10"


def test_an_upload_cut_by_shutdown_gets_a_problem_document(
    make_live: Callable[..., LiveServer], settings: Settings
) -> None:
    live = make_live(settings, timeout_graceful_shutdown=0.5)
    token = live.token()
    with live.connect(timeout=20) as sock:
        sock.sendall(
            b"POST /api/v1/uploads HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n"
            + f"Authorization: Bearer {token}\r\n\r\n".encode()
            + b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
            + b"\0" * 1000
        )
        time.sleep(0.2)  # the upload is under way
        stopper = threading.Thread(target=live.stop)
        stopper.start()
        status, headers, body = read_answer(sock)
        stopper.join()
    assert status == 503
    document = problem(status, headers, body)
    assert document["code"] == "SERVER_BUSY"
    assert headers["retry-after"] == "10"
