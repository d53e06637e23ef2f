"""Signed result URLs: they verify until they expire, and any change breaks them."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from beatsync.service.signing import signed_path, verify

SECRET = "s3cret-for-tests"
PATH = "/api/v1/files/job_abc/output.mp4"


def _parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path, query["exp"][0], query["sig"][0]


def test_a_signed_path_verifies_until_it_expires() -> None:
    path, exp, sig = _parts(signed_path(SECRET, PATH, ttl_s=60, now=1_000_000))
    assert path == PATH
    assert exp == "1000060"
    assert verify(SECRET, PATH, exp, sig, now=1_000_059)
    assert not verify(SECRET, PATH, exp, sig, now=1_000_061)


def test_tampering_is_rejected() -> None:
    _, exp, sig = _parts(signed_path(SECRET, PATH, ttl_s=60, now=1_000_000))
    assert not verify(SECRET, PATH.replace("abc", "abd"), exp, sig, now=1_000_000)
    assert not verify(SECRET, PATH, str(int(exp) + 1), sig, now=1_000_000)
    assert not verify("other-secret", PATH, exp, sig, now=1_000_000)
    assert not verify(SECRET, PATH, exp, sig[:-1] + ("A" if sig[-1] != "A" else "B"), now=0)
    assert not verify(SECRET, PATH, None, sig)
    assert not verify(SECRET, PATH, exp, None)
    assert not verify(SECRET, PATH, "-5", sig)


@given(exp=st.text(max_size=30), sig=st.text(max_size=100))
def test_arbitrary_parameters_never_verify_or_raise(exp: str, sig: str) -> None:
    assert not verify(SECRET, PATH, exp, sig, now=0)
