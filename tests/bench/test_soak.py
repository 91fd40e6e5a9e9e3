"""`make soak` cannot rot: a seconds-long soak with a few clients and slow clients passes its checks.

The figures at this size mean nothing; what is checked is that the clients of both modes are served
without an error, that every slow client is cut at the head deadline (not before, not long after),
and that the appliance's file descriptors come back to where they were.
"""

from __future__ import annotations

import pytest

from bench.peers import missing_binaries
from bench.soak import Settings, run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(missing_binaries()), reason=f"needs {' '.join(missing_binaries())}"),
]


@pytest.mark.timeout(180)
def test_a_short_soak_serves_every_request_and_cuts_every_slow_client_at_its_deadline() -> None:
    report = run(Settings(seconds=4, clients=6, slow=4, head_timeout=1.5, dist_seconds=1), log=lambda _: None)
    appliance = report["appliance"]
    assert isinstance(appliance, dict)
    assert appliance["errors"] == {}
    assert appliance["requests"] > 0
    slow = appliance["slow"]
    assert slow["cut"] >= 4 and slow["cut_late"] == 0 and slow["cut_early"] == 0
    assert appliance["checks"] == {check: True for check in appliance["checks"]}
    distribution = report["distribution"]
    assert isinstance(distribution, dict)
    assert distribution["errors"] == {} and distribution["requests"] > 0
