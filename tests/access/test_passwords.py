"""Password hashes: scrypt made here, bcrypt from htpasswd files, and the dummy hash's cost."""

from __future__ import annotations

import time

import bcrypt
import pytest

from appliance.access.passwords import (
    DEFAULT_DUMMY,
    DEFAULT_LOG_N,
    DummyHash,
    cost_of,
    hash_password,
    parse_scrypt,
    typical_cost,
    verify_password,
)
from appliance.config.access import check_password_hash
from appliance.errors import ConfigError

FAST = 10  # 2^10: tests need the mechanics, not the cost


def test_scrypt_hash_is_a_phc_string_that_verifies_only_its_password() -> None:
    stored = hash_password("correct horse", log_n=FAST)
    assert stored.startswith("$scrypt$ln=10,r=8,p=1$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert check_password_hash(stored, "where") == stored


def test_two_hashes_of_one_password_differ_by_their_salt() -> None:
    assert hash_password("pw", log_n=FAST) != hash_password("pw", log_n=FAST)


def test_the_cost_is_read_from_the_hash() -> None:
    stored = hash_password("pw", log_n=11)
    assert parse_scrypt(stored).log_n == 11
    assert verify_password("pw", stored)


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$"])
def test_bcrypt_from_htpasswd_verifies(prefix: str) -> None:
    made = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    stored = prefix + made[4:]
    assert check_password_hash(stored, "where") == stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cre", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "plain-text-password",
        "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "$apr1$abc$defghijklmnopqrstuvwxy",
        "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$scrypt$broken",
        "$2y$05$short",
    ],
)
def test_unusable_hashes_are_refused_without_echoing_them(stored: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_password_hash(stored, "access.users[0].password_hash")
    assert caught.value.where == "access.users[0].password_hash"
    assert stored not in str(caught.value)
    assert not verify_password("anything", stored)


@pytest.mark.parametrize("like", [None, "scrypt-12", "bcrypt-5"])
def test_no_password_matches_the_dummy_hash_and_it_costs_what_a_users_hash_costs(like: str | None) -> None:
    if like == "scrypt-12":
        real = hash_password("pw", log_n=12)
    elif like == "bcrypt-5":
        real = "$2y$" + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=5)).decode()[4:]
    else:
        real = hash_password("pw")
    dummy = DummyHash(real if like else None)
    assert cost_of(dummy.value()) == cost_of(real)
    assert dummy.value() == dummy.value()  # made once
    assert not verify_password("pw", dummy.value())
    timings: dict[str, list[float]] = {"dummy": [], "real": []}
    for _ in range(5):
        for name, stored in (("dummy", dummy.value()), ("real", real)):
            start = time.perf_counter()
            verify_password("px", stored)
            timings[name].append(time.perf_counter() - start)
    # The fastest of each: the least disturbed by other load on the machine (shared, so wide bounds;
    # the same algorithm and cost are asserted exactly above).
    assert 1 / 10 < min(timings["dummy"]) / min(timings["real"]) < 10, timings


def test_the_built_in_dummy_is_a_default_cost_hash_and_needs_no_work() -> None:
    assert cost_of(DEFAULT_DUMMY) == cost_of(hash_password("x", log_n=DEFAULT_LOG_N))
    assert DummyHash().value() == DEFAULT_DUMMY


def test_the_typical_cost_is_the_most_common_one() -> None:
    a, b = hash_password("a", log_n=10), hash_password("b", log_n=11)
    c = hash_password("c", log_n=11)
    assert cost_of(typical_cost([a, b, c]) or "") == cost_of(b)
    assert typical_cost([]) is None
