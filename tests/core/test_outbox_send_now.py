"""The outbox hands a flush to the kernel at once (chatnet.wire.outbox.send_now),
checked on a real TLS connection: the peer's socket is readable before the
reactor turns again."""

from __future__ import annotations

import select

import pytest_twisted

from chatnet.wire.codec import event_frame
from chatnet.wire.outbox import send_now


def _server_side(server, username):
    return next(p for p in server.service.factory.protocols if p.username == username)


@pytest_twisted.ensureDeferred
async def test_a_flushed_frame_is_on_the_wire_before_the_next_reactor_turn(server):
    """A frame sent to a session and flushed is in the client's socket at once:
    select() on the client's descriptor, without letting the reactor run, sees
    it readable. Without the eager send it would wait in Twisted's buffer for
    the next turn."""
    alice = await server.user("alice")
    proto = _server_side(server, "alice")
    client_socket = alice.transport.transport.fileno()
    readable, _, _ = select.select([client_socket], [], [], 0)
    assert readable == [], "the connection should be quiet before the test"
    proto.send_frame(event_frame("system", {"body": "now", "ts": 1}))
    server.service.factory.coalescer.flush()
    readable, _, _ = select.select([client_socket], [], [], 1.0)
    assert readable == [client_socket]


@pytest_twisted.ensureDeferred
async def test_send_now_leaves_closing_connections_and_plain_objects_alone(server):
    """On a connection that is closing, send_now does nothing (the reactor finishes
    the close); an object without a TCP transport under it is ignored."""
    alice = await server.user("alice")
    proto = _server_side(server, "alice")
    tcp = proto.transport.transport
    tcp.loseConnection()
    assert tcp.disconnecting
    send_now(proto.transport)  # must not raise nor act on the closing socket
    send_now(object())
    await alice.when_lost()
