"""Robot tokens: prefix, public id, stored digest, constant-time check."""

from __future__ import annotations

from appliance.access import tokens
from appliance.config.access import check_token_digest, check_token_id


def test_a_new_token_has_the_prefix_its_id_and_a_digest_of_itself() -> None:
    made = tokens.new_token()
    assert made.secret.startswith(f"rat_{made.token_id}_")
    assert tokens.token_id_of(made.secret) == made.token_id
    assert check_token_id(made.token_id, "id") == made.token_id
    assert check_token_digest(made.digest, "hash") == made.digest
    assert made.secret not in made.digest
    assert made.secret not in repr(made)


def test_only_the_token_matches_its_digest() -> None:
    made = tokens.new_token()
    other = tokens.new_token()
    assert tokens.matches(made.secret, made.digest)
    assert not tokens.matches(other.secret, made.digest)
    assert not tokens.matches(made.secret, None)


def test_malformed_tokens_have_no_id() -> None:
    made = tokens.new_token()
    assert tokens.token_id_of(made.secret[:-1]) is None
    assert tokens.token_id_of("rat_short_x") is None
    assert tokens.token_id_of("ghp_" + made.secret[4:]) is None
