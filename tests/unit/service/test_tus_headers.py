"""The tus header parsers and the file-name sanitiser, against generated input.

Every well-formed header round-trips to exactly what was encoded; anything else is refused
with a 400 VALIDATION_ERROR — never another exception, never a silent misreading.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from beatsync.service.api.tus import (
    DIGEST_SIZES,
    MAX_METADATA_CHARS,
    parse_checksum,
    parse_metadata,
    parse_size,
)
from beatsync.service.errors import ServiceError
from beatsync.service.uploads import MAX_FILENAME_CHARS, sanitize_filename

T = TypeVar("T")
KEY_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ",")
keys = st.text(alphabet=KEY_ALPHABET, min_size=1, max_size=20)
metadata = st.dictionaries(keys, st.binary(max_size=60), max_size=8)
header_text = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=80)


def _refused(call: Callable[..., object], *args: object) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call(*args)
    assert caught.value.status == 400
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value


def _attempt(parse: Callable[[str], T], header: str) -> tuple[T | None, ServiceError | None]:
    """What ``parse`` makes of ``header``: its result, or the ServiceError it raised."""
    try:
        return parse(header), None
    except ServiceError as error:
        return None, error


def _encode(pairs: dict[str, bytes], *, padded: bool = True, spaced: bool = False) -> str:
    items = []
    for key, value in pairs.items():
        encoded = base64.b64encode(value).decode()
        if not padded:
            encoded = encoded.rstrip("=")
        items.append(key if not value and not spaced else f"{key} {encoded}")
    return (", " if spaced else ",").join(items)


@given(metadata, st.booleans(), st.booleans())
@example({"filename": "课堂.mp4".encode(), "filetype": b"video/mp4"}, True, False)
@example({"empty": b""}, True, True)
def test_metadata_round_trips(pairs: dict[str, bytes], padded: bool, spaced: bool) -> None:
    assert parse_metadata(_encode(pairs, padded=padded, spaced=spaced)) == pairs


@given(keys, st.binary(max_size=20), st.binary(max_size=20))
def test_a_repeated_metadata_key_is_refused(key: str, first: bytes, second: bytes) -> None:
    header = f"{key} {base64.b64encode(first).decode()},{key} {base64.b64encode(second).decode()}"
    assert "twice" in (_refused(parse_metadata, header).detail or "")


@given(header_text)
@example("filename Y*Q==")
@example("filename YQ== extra")
@example("fil\u00e9name YQ==")
@example("filename Y")
@example("filename YQ==YQ==")
def test_any_metadata_header_is_parsed_or_refused_cleanly(header: str) -> None:
    pairs, error = _attempt(parse_metadata, header)
    if error is not None:
        assert (error.status, error.code) == (400, "VALIDATION_ERROR")
        return
    assert pairs is not None
    for key in pairs:
        assert re.fullmatch(r"[\x21-\x2b\x2d-\x7e]+", key)


def test_metadata_longer_than_the_limit_is_refused() -> None:
    header = "filename " + "A" * MAX_METADATA_CHARS
    assert "longer" in (_refused(parse_metadata, header).detail or "")


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_sizes_round_trip(value: int) -> None:
    assert parse_size(str(value), "Upload-Length") == value
    assert parse_size(f" {value}\t", "Upload-Offset") == value


@given(header_text)
@example("-1")
@example("+5")
@example("1e3")
@example("0x10")
@example("٣")
@example("9223372036854775808")
@example("12 34")
@example("")
def test_anything_but_plain_digits_is_not_a_size(text: str) -> None:
    if re.fullmatch(r"[ \t]*[0-9]{1,19}[ \t]*", text) and int(text) < 2**63:
        assert parse_size(text, "Upload-Length") == int(text)
    else:
        error = _refused(parse_size, text, "Upload-Length")
        assert "Upload-Length" in (error.detail or "")


def test_a_missing_size_is_refused() -> None:
    assert "required" in (_refused(parse_size, None, "Upload-Offset").detail or "")


@given(st.sampled_from(sorted(DIGEST_SIZES)), st.data())
def test_checksums_round_trip(algorithm: str, data: st.DataObject) -> None:
    digest = data.draw(
        st.binary(min_size=DIGEST_SIZES[algorithm], max_size=DIGEST_SIZES[algorithm])
    )
    header = f"{algorithm.upper() if data.draw(st.booleans()) else algorithm} " + (
        base64.b64encode(digest).decode()
    )
    assert parse_checksum(header) == (algorithm, digest)


@given(st.sampled_from(sorted(DIGEST_SIZES)), st.binary(max_size=64))
def test_a_digest_of_the_wrong_size_is_refused(algorithm: str, digest: bytes) -> None:
    header = f"{algorithm} {base64.b64encode(digest).decode()}"
    if len(digest) == DIGEST_SIZES[algorithm]:
        assert parse_checksum(header) == (algorithm, digest)
    else:
        _refused(parse_checksum, header)


@given(header_text)
@example("crc32 AAAAAA==")
@example("sha512 " + "A" * 88)
@example("sha1")
def test_any_checksum_header_is_parsed_or_refused_cleanly(header: str) -> None:
    parsed, error = _attempt(parse_checksum, header)
    if error is not None:
        assert (error.status, error.code) == (400, "VALIDATION_ERROR")
        return
    assert parsed is not None
    algorithm, digest = parsed
    assert len(digest) == DIGEST_SIZES[algorithm]


def test_no_checksum_header_means_no_check() -> None:
    assert parse_checksum(None) is None


names = st.one_of(st.text(max_size=400), st.binary(max_size=400))


@given(names)
@example(b"\xff\xfe../x")
@example("..")
@example("C:\\a\\b.mp4")
def test_a_sanitised_name_is_a_short_printable_base_name(raw: str | bytes) -> None:
    name = sanitize_filename(raw)
    assert len(name) <= MAX_FILENAME_CHARS
    assert "/" not in name
    assert "\\" not in name
    assert name not in (".", "..")
    assert name == name.strip()
    name.encode("utf-8")  # storable and sendable as it is
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") for c in name)
    assert sanitize_filename(name) == name


@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=200))
def test_a_plain_name_is_kept_as_it_is(stem: str) -> None:
    assert sanitize_filename(f"/some/folder/{stem}.mp4") == f"{stem}.mp4"
