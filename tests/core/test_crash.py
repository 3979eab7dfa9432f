"""kill -9 of the server under sustained sends (DESIGN.md: acknowledged means durable).

A real ``twistd chatnet`` subprocess is SIGKILLed while four
:class:`~chatnet.client.session.ChatSession` clients send continuously, then
started again on the same port and data directory, a few times over (the
scenario is :mod:`tests.support.crash`; ``bench/crash.py`` runs 20 cycles).
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from tests.support.crash import crash_run


@pytest_twisted.ensureDeferred
async def test_every_acknowledged_message_survives_kill_9_exactly_once(tmp_path):
    """After 3 SIGKILL + restart cycles under sustained sends: every acknowledged
    message is in history once, with the msg_id and seq it was acknowledged with;
    the sends that were in flight at a kill were re-sent by the sessions and are
    stored once (no duplicates, every send acknowledged in the end); seqs have no
    gap; the SQLite file passes integrity_check."""
    run = Deferred.fromCoroutine(crash_run(reactor, tmp_path / "data", cycles=3, clients=4,
                                           window=4, acks_per_cycle=60))
    # A stall (a session that never comes back) fails the test instead of hanging it;
    # cancelling stops the senders, the sessions and the server.
    report = await run.addTimeout(120, reactor)
    assert report.cycles == 3
    assert report.failed == []
    assert report.unacknowledged_at_kill > 0, "no send was caught in flight by a kill"
    assert report.acknowledged == report.sent, "every send was acknowledged in the end"
    assert report.lost == 0 and report.mismatched == 0
    assert report.found == report.acknowledged
    assert report.duplicates == 0
    assert report.history == report.acknowledged
    assert report.seqs_gapless
    assert report.integrity == "ok"
