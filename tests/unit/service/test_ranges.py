"""The Range parser: exact answers for the forms players send, and never a crash on any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beatsync.service.ranges import ByteRange, Unsatisfiable, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=0-999", 0, 1000),
        ("bytes=0-5000", 0, 1000),
        ("bytes=500-", 500, 1000),
        ("bytes=999-", 999, 1000),
        ("bytes=-1", 999, 1000),
        ("bytes=-1000", 0, 1000),
        ("bytes=-99999", 0, 1000),
        ("Bytes= 10-20 ", 10, 21),
        ("bytes=00010-00020", 10, 21),
        ("bytes=10-20,", 10, 21),
    ],
)
def test_single_ranges(header: str, start: int, stop: int) -> None:
    wanted = parse_range(header, SIZE)
    assert wanted == ByteRange(start, stop, SIZE)
    assert isinstance(wanted, ByteRange)
    assert wanted.length == stop - start
    assert wanted.content_range == f"bytes {start}-{stop - 1}/{SIZE}"


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=1000-1001", "bytes=-0", "bytes=5000-6000"]
)
def test_ranges_beyond_the_file_are_unsatisfiable(header: str) -> None:
    wanted = parse_range(header, SIZE)
    assert wanted == Unsatisfiable(SIZE)
    assert isinstance(wanted, Unsatisfiable)
    assert wanted.content_range == "bytes */1000"


def test_an_empty_file_satisfies_no_range() -> None:
    for header in ("bytes=0-", "bytes=-5", "bytes=0-0"):
        assert parse_range(header, 0) == Unsatisfiable(0)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=20-10",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=0-1,3-4",
        "bytes=0-1, 2-3",
        "bytes=1 0-20",
        "bytes=+1-2",
        "bytes=0x10-",
        "bytes=²-",
        "bytes=١-٢",
        "items=0-10",
        "=0-10",
        "bytes 0-10",
    ],
)
def test_headers_we_do_not_serve_as_a_range_mean_the_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@given(header=st.text(max_size=80), size=st.integers(min_value=0, max_value=10**12))
def test_arbitrary_headers_never_raise_and_stay_inside_the_file(header: str, size: int) -> None:
    wanted = parse_range(header, size)
    assert wanted is None or isinstance(wanted, ByteRange | Unsatisfiable)
    if isinstance(wanted, ByteRange):
        assert 0 <= wanted.start < wanted.stop <= size
    if isinstance(wanted, Unsatisfiable):
        assert wanted.size == size


_DIGITS = st.integers(min_value=0, max_value=10**40).map(str)


@given(
    first=st.one_of(st.just(""), _DIGITS),
    last=st.one_of(st.just(""), _DIGITS),
    size=st.integers(min_value=0, max_value=10**9),
)
def test_well_formed_ranges_follow_rfc_9110(first: str, last: str, size: int) -> None:
    wanted = parse_range(f"bytes={first}-{last}", size)
    if not first and not last:
        assert wanted is None
    elif not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            assert wanted == Unsatisfiable(size)
        else:
            assert wanted == ByteRange(max(0, size - suffix), size, size)
    elif last and int(last) < int(first):
        assert wanted is None
    elif int(first) >= size:
        assert wanted == Unsatisfiable(size)
    else:
        stop = size if not last else min(int(last) + 1, size)
        assert wanted == ByteRange(int(first), stop, size)


@given(
    ranges=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=2, max_size=5)
)
def test_several_ranges_mean_the_whole_file(ranges: list[tuple[int, int]]) -> None:
    header = "bytes=" + ",".join(f"{a}-{a + b}" for a, b in ranges)
    assert parse_range(header, SIZE) is None


def test_numbers_longer_than_any_file_are_handled_without_converting_them() -> None:
    huge = "9" * 5000  # int() refuses strings this long
    assert parse_range(f"bytes={huge}-", SIZE) == Unsatisfiable(SIZE)
    assert parse_range(f"bytes=0-{huge}", SIZE) == ByteRange(0, SIZE, SIZE)
    assert parse_range(f"bytes=-{huge}", SIZE) == ByteRange(0, SIZE, SIZE)
    assert parse_range(f"bytes={huge}-{'0' * 6000}5", SIZE) is None
