"""S3 multipart uploads that the service assembles itself (resumable and direct uploads), and
the error sorting :class:`beatsync.service.storage.s3.S3Storage` shares with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from .base import StorageUnavailable, check_key

__all__ = ["S3Parts"]

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
# CompleteMultipartUpload's answers to parts sent wrong (by a client, for direct uploads).
_BAD_PARTS = frozenset({"EntityTooSmall", "InvalidPart", "InvalidPartOrder"})
# Presigned URLs signed with SigV4 live at most seven days.
_MAX_PRESIGN_S = 7 * 24 * 3600
_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
}


class S3Parts:
    """Multipart uploads part by part, for :class:`S3Storage` (which provides the clients)."""

    bucket: str

    def _client(self, role: str = "data") -> Any:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` (small: a resumable upload's tail) under ``key``."""
        check_key(key)
        try:
            self._client().put_object(Bucket=self.bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("storing", key, exc)

    def delete_key(self, key: str) -> None:
        """Delete one object (absent already: nothing to do)."""
        check_key(key)
        try:
            self._client().delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("deleting", key, exc)

    def start_multipart(self, key: str) -> str:
        """Begin a multipart upload of ``key``; its upload id."""
        check_key(key)
        extra = {"ContentType": _CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")}
        try:
            answer = self._client().create_multipart_upload(Bucket=self.bucket, Key=key, **extra)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("starting an upload of", key, exc)
        return str(answer["UploadId"])

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> None:
        """Store part ``number`` (1-based) of a multipart upload, replacing any earlier one."""
        check_key(key)
        try:
            self._client().upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
        except ClientError as exc:
            if _code(exc) == "NoSuchUpload":
                raise FileNotFoundError(key) from exc
            _unavailable("storing a part of", key, exc)
        except BotoCoreError as exc:
            _unavailable("storing a part of", key, exc)

    def finish_multipart(self, key: str, upload_id: str, *, parts: int) -> None:
        """Join parts ``1..parts`` into ``key`` (FileNotFoundError: the upload is gone, or
        one of the parts was never stored; ValueError: the store refuses the parts, e.g. one
        but the last is smaller than 5 MiB)."""
        check_key(key)
        client = self._client()
        etags: dict[int, str] = {}
        try:
            pages = client.get_paginator("list_parts")
            for page in pages.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for item in page.get("Parts") or ():
                    etags[int(item["PartNumber"])] = str(item["ETag"])
            missing = [n for n in range(1, parts + 1) if n not in etags]
            if missing:
                raise FileNotFoundError(f"{key}: parts {missing[:5]} are missing")
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, parts + 1)]
                },
            )
        except ClientError as exc:
            if _code(exc) == "NoSuchUpload":
                raise FileNotFoundError(key) from exc
            if _code(exc) in _BAD_PARTS:
                raise ValueError(f"the store refused the parts of {key}: {_code(exc)}") from exc
            _unavailable("joining the parts of", key, exc)
        except BotoCoreError as exc:
            _unavailable("joining the parts of", key, exc)

    def presigned_part_url(self, key: str, upload_id: str, number: int, *, expires_s: int) -> str:
        """A URL a client can ``PUT`` part ``number`` of a multipart upload to directly."""
        check_key(key)
        try:
            url: str = self._client("presign").generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=max(1, min(int(expires_s), _MAX_PRESIGN_S)),
            )
        except BotoCoreError as exc:
            _unavailable("signing a part URL for", key, exc)
        return url

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an unfinished multipart upload and its parts (already gone: nothing to do)."""
        check_key(key)
        try:
            self._client().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in _MISSING | {"NoSuchUpload"}:
                _unavailable("aborting the upload of", key, exc)
        except BotoCoreError as exc:
            _unavailable("aborting the upload of", key, exc)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise(exc: ClientError, what: str, key: str) -> NoReturn:
    if _code(exc) in _MISSING:
        raise FileNotFoundError(key) from exc
    _unavailable(what, key, exc)


def _unavailable(what: str, key: str, exc: BaseException) -> NoReturn:
    raise StorageUnavailable(f"S3: {what} {key}: {exc}") from exc
