"""The outbox hands a flush to the kernel at once (chatnet.wire.outbox.send_now),
checked on a real TLS connection: the peer's socket is readable before the
reactor turns again; a cluster node publishes a turn's events before that."""

from __future__ import annotations

import select
import socket

import pytest_twisted

from chatnet.wire.codec import event_frame
from chatnet.wire.outbox import send_now
from tests.support.chat import create_room


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


def _subscribe(host: str, port: int, channel: bytes) -> socket.socket:
    """A plain Redis connection subscribed to ``channel`` (RESP by hand: the test
    must read it while the reactor is not running)."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
    confirmation = b""
    while not confirmation.endswith(b":1\r\n"):
        confirmation += sock.recv(4096)
    return sock


@pytest_twisted.ensureDeferred
async def test_a_cluster_node_publishes_a_turns_events_before_writing_its_connections(
        redis, make_server):
    """A node's end-of-turn flush first publishes the turn's events and puts them
    on the Redis socket at once: another node (here a plain subscriber) has them
    before this node writes its own connections and before the reactor turns.
    Without it the other nodes would start their half of a fan-out only after
    this node's (milliseconds per hundred connections)."""
    node = await make_server(**redis)
    alice = await node.user("alice")
    room = await create_room(alice)
    host, port, _db = redis["redis"]
    subscriber = _subscribe(host, port, node.service.fanout.bus.channel)
    try:
        node.service.fanout.deliver_room(room["room_id"],
                                         event_frame("system", {"body": "now", "ts": 1}))
        assert select.select([subscriber], [], [], 0)[0] == []
        node.service.factory.coalescer.flush()
        assert select.select([subscriber], [], [], 1.0)[0] == [subscriber]
        assert b"now" in subscriber.recv(65536)
    finally:
        subscriber.close()
