"""S3-compatible storage (AWS S3, MinIO, Aliyun OSS, Tencent COS) through boto3.

Large files go up as multipart uploads streamed from disk and come down in ranged chunks, so no
file is ever held in memory. Errors are sorted at this boundary::

    missing key             FileNotFoundError (read, fetch), None (size)
    anything else           StorageUnavailable, after botocore's own retries
    (connection, timeout,
     credentials, bucket)

Stores other than AWS differ in small ways this class absorbs: checksums are sent only where an
operation requires them (recent botocore adds CRC32 headers to every upload, which several
S3-compatible stores refuse), and ``DeleteObjects`` also carries the ``Content-MD5`` those stores
still demand.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .base import StorageUnavailable, check_key
from .s3parts import _CONTENT_TYPES, _MAX_PRESIGN_S, _MISSING, S3Parts, _code, _raise, _unavailable

if TYPE_CHECKING:
    from beatsync.service.config import Settings

__all__ = ["S3Storage"]

_CHUNK = 1 << 20
_MiB = 1 << 20


class S3Storage(S3Parts):
    """Keys as objects of one bucket; the client is made per process (boto3 clients do not
    survive ``fork``) and shared by its threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        part_size: int | None = None,
        concurrency: int = 4,
        attempts: int = 3,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        delete_batch: int = 1000,
    ) -> None:
        if not settings.s3_bucket:
            raise ValueError("BEATSYNC_S3_BUCKET is empty")
        if part_size is None:
            part_size = settings.s3_part_size_mb * _MiB
        if part_size < 5 * _MiB:
            raise ValueError("part_size must be at least 5 MiB (the smallest S3 part)")
        if not 1 <= delete_batch <= 1000:
            raise ValueError("delete_batch must be within 1..1000 (the DeleteObjects limit)")
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.part_size = part_size
        self.delete_batch = delete_batch
        self.transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=concurrency,
            use_threads=concurrency > 1,
        )
        self._concurrency = concurrency
        self._attempts = attempts
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._pid = os.getpid()
        self._client()  # a malformed endpoint or addressing style fails here, at start-up

    # -- clients ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """This process's boto3 client for transfers (for tools that need more than keys)."""
        return self._client()

    def _client(self, role: str = "data") -> Any:
        """``data`` for transfers, ``probe`` (one attempt, short timeouts) for readiness,
        ``presign`` (the endpoint clients see) for URLs handed out."""
        with self._lock:
            if self._pid != os.getpid():
                self._clients.clear()
                self._pid = os.getpid()
            client = self._clients.get(role)
            if client is None:
                client = self._clients[role] = self._make_client(role)
            return client

    def _make_client(self, role: str) -> Any:
        settings = self.settings
        connect_s, read_s = self._timeouts
        attempts = self._attempts
        endpoint = settings.s3_endpoint_url or None
        if role == "probe":
            attempts, connect_s, read_s = 1, min(connect_s, 3.0), min(read_s, 5.0)
        elif role == "presign":
            endpoint = settings.s3_public_endpoint_url or endpoint
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": settings.s3_addressing_style},
            connect_timeout=connect_s,
            read_timeout=read_s,
            retries={"mode": "standard", "total_max_attempts": attempts},
            # The API streams from many threads at once when it proxies downloads.
            max_pool_connections=max(32, 2 * self._concurrency),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        credentials: dict[str, str] = {}
        if settings.s3_access_key_id:
            credentials = {
                "aws_access_key_id": settings.s3_access_key_id,
                "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
            }
        # A session per client: boto3's default session is not safe to share between threads.
        session = boto3.session.Session(region_name=settings.s3_region or None, **credentials)
        client = session.client("s3", endpoint_url=endpoint, config=config)
        client.meta.events.register("before-sign.s3.DeleteObjects", _content_md5)
        return client

    # -- the protocol ----------------------------------------------------------------------

    def put_file(self, key: str, path: Path) -> int:
        check_key(key)
        size = path.stat().st_size
        extra = {"ContentType": _CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")}
        try:
            self._client().upload_file(
                str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer
            )
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            _unavailable("storing", key, exc)
        path.unlink(missing_ok=True)
        return size

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_key(key)
        if start < 0 or (end is not None and end <= start):
            return iter(())
        wanted = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self._client().get_object(
                Bucket=self.bucket, Key=key, **({"Range": wanted} if start or end else {})
            )
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # starts at or past the end: nothing to send
                return iter(())
            _raise(exc, "reading", key)
        except BotoCoreError as exc:
            _unavailable("reading", key, exc)
        return _chunks(response["Body"], key)

    def fetch(self, key: str, dest: Path) -> Path:
        check_key(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client().download_file(self.bucket, key, str(dest), Config=self.transfer)
        except ClientError as exc:
            _raise(exc, "fetching", key)
        except (BotoCoreError, Boto3Error) as exc:
            _unavailable("fetching", key, exc)
        return dest

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def modified(self, key: str) -> datetime | None:
        head = self._head(key)
        if head is None:
            return None
        moment: datetime = head["LastModified"]
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata, or None when there is no such key."""
        check_key(key)
        try:
            head: dict[str, Any] = self._client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            _unavailable("looking up", key, exc)
        except BotoCoreError as exc:
            _unavailable("looking up", key, exc)
        return head

    def delete_prefix(self, prefix: str) -> int:
        check_key(prefix)
        client = self._client()
        self._abort_multipart(client, f"{prefix}/")
        batch: list[str] = []
        deleted = 0
        folders = {f"{prefix}/"}
        for key in self.keys(prefix):
            batch.append(key)
            folders.update(_folders_between(prefix, key))
            if len(batch) == self.delete_batch:
                deleted += self._delete(client, batch)
                batch = []
        if batch:
            deleted += self._delete(client, batch)
        # Stores with real folders (SeaweedFS) keep them, empty, after their objects go, and
        # list them again; deleting a folder's name ("a/b/") removes an empty one, deepest
        # first. Where folders are only prefixes (AWS), the names are no objects: no error.
        names = sorted(folders, key=lambda name: (-name.count("/"), name))
        try:
            for i in range(0, len(names), self.delete_batch):
                self._delete(client, names[i : i + self.delete_batch])
        except StorageUnavailable:
            pass  # a folder written to meanwhile stays, as it should
        return deleted

    def delete(self, keys: Sequence[str]) -> int:
        client = self._client()
        listed = [check_key(key) for key in keys]
        step = self.delete_batch
        return sum(self._delete(client, listed[i : i + step]) for i in range(0, len(listed), step))

    def _delete(self, client: Any, keys: list[str]) -> int:
        try:
            answer = client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            )
        except (BotoCoreError, ClientError) as exc:
            _unavailable("deleting", keys[0].rsplit("/", 1)[0], exc)
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageUnavailable(
                f"S3 refused to delete {len(errors)} of {len(keys)} objects, such as "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        return len(keys)

    def _abort_multipart(self, client: Any, below: str) -> None:
        """Abort the unfinished multipart uploads under ``below``: their parts are stored (and
        paid for) until then, and no listing of keys shows them."""
        try:
            pages = client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self.bucket, Prefix=below):
                for item in page.get("Uploads") or ():
                    client.abort_multipart_upload(
                        Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                    )
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                _unavailable("aborting uploads under", below, exc)
        except BotoCoreError as exc:
            _unavailable("aborting uploads under", below, exc)

    def keys(self, prefix: str = "", *, start: str = "") -> Iterator[str]:
        below = f"{check_key(prefix)}/" if prefix else ""
        if start:
            below += check_key(start)
        pages = self._client().get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=below):
                for item in page.get("Contents") or ():
                    yield str(item["Key"])
        except (BotoCoreError, ClientError) as exc:
            _unavailable("listing", below or "the bucket", exc)

    def names(self, prefix: str) -> Iterator[str]:
        below = f"{check_key(prefix)}/"
        pages = self._client().get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=below, Delimiter="/"):
                for folder in page.get("CommonPrefixes") or ():
                    yield str(folder["Prefix"])[len(below) :].rstrip("/")
                for item in page.get("Contents") or ():
                    yield str(item["Key"])[len(below) :]
        except (BotoCoreError, ClientError) as exc:
            _unavailable("listing", below, exc)

    def presigned_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str | None:
        check_key(key)
        if not self.settings.s3_presigned_downloads:
            return None
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = _attachment(filename)
        try:
            url: str = self._client("presign").generate_presigned_url(
                "get_object",
                Params=params,
                ExpiresIn=max(1, min(int(expires_s), _MAX_PRESIGN_S)),
            )
        except BotoCoreError as exc:  # e.g. no credentials anywhere in the chain
            _unavailable("signing a URL for", key, exc)
        return url

    def check(self) -> None:
        try:
            self._client("probe").head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING | {"NoSuchBucket"}:
                raise StorageUnavailable(f"S3 bucket {self.bucket} does not exist") from exc
            _unavailable("checking the bucket", self.bucket, exc)
        except BotoCoreError as exc:
            _unavailable("checking the bucket", self.bucket, exc)


def _folders_between(prefix: str, key: str) -> Iterator[str]:
    """The folder names (``a/b/``) below ``prefix`` that hold ``key``."""
    parts = key[len(prefix) + 1 :].split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        yield f"{prefix}/{'/'.join(parts[:depth])}/"


def _chunks(body: Any, key: str) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(_CHUNK)
    except (BotoCoreError, OSError) as exc:
        _unavailable("reading", key, exc)
    finally:
        body.close()


def _attachment(filename: str) -> str:
    """``Content-Disposition`` for a download, readable by old and new clients (RFC 6266)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def _content_md5(request: Any, **_: Any) -> None:
    """Add ``Content-MD5`` to a ``DeleteObjects`` request: botocore now sends only a CRC32,
    which AWS accepts but MinIO, OSS, COS and others answer with ``MissingContentMD5``."""
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes) and "Content-MD5" not in request.headers:
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        request.headers["Content-MD5"] = base64.b64encode(digest).decode()
