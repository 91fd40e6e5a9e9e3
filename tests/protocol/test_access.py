"""The access records on the wire: round trips, tolerance of unknown keys, no hash in a repr."""

from __future__ import annotations

from appliance.protocol import access as pa


def test_the_view_round_trips_and_ignores_keys_it_does_not_know() -> None:
    view = pa.AccessView(
        enabled=True,
        allow_clients=("10.0.0.0/8",),
        users=(pa.UserView("alice", "config", ("developers",)),),
        groups=(pa.GroupView("developers", ("alice",)),),
        tokens=(pa.TokenView("ci", "abcd1234", created=1.0, expires=None, last_used=2.0),),
        clients=(pa.ClientView("10.42.0.0/16", "k8s-nodes"),),
        acl=(pa.RuleView(0, "@developers", ("pull", "push"), registry="ghcr.io", repository="org/**"),),
    )
    data = view.to_json()
    data["a_field_from_a_newer_engine"] = 1
    assert pa.AccessView.from_json(data) == view


def test_edits_keep_their_hashes_out_of_repr() -> None:
    user = pa.UserEdit(name="alice", password_hash="$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA", groups=("dev",))
    token = pa.TokenEdit(name="ci", id="abcd1234", hash="sha256:" + "ab" * 32, created=1.0)
    assert "scrypt" not in repr(user) and "alice" in repr(user)
    assert "sha256" not in repr(token) and "abcd1234" in repr(token)
    assert pa.UserEdit.from_json(user.to_json()) == user
    assert pa.TokenEdit.from_json(token.to_json()) == token
