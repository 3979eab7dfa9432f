import pytest_twisted

from chatnet.client.core import Event


@pytest_twisted.ensureDeferred
async def test_two_users_chat_in_a_room(server):
    alice = await server.user("alice")
    bob = await server.user("bob")
    events: list[Event] = []
    bob.add_listener(events.append)
    room = await alice.request("room.create", {"name": "general", "visibility": "public"})
    await bob.request("room.join", {"room_id": room["room_id"]})
    ack = await alice.request("msg.send", {"room_id": room["room_id"], "body": "hi bob",
                                           "client_msg_id": "c1"})
    assert ack["seq"] == 1
    history = await bob.request("msg.history", {"room_id": room["room_id"]})
    assert [m["body"] for m in history["messages"]] == ["hi bob"]
    msgs = [e for e in events if e.name == "msg"]
    assert msgs and msgs[0].data["message"]["body"] == "hi bob"
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_tcp_nodelay_is_set_on_both_ends(server):
    """Nagle's algorithm is off on the accepted socket and on the client's socket
    (it alone puts ~35 ms on the latency tail)."""
    import socket

    conn = await server.user("alice")
    [proto] = [p for p in server.service.factory.protocols if p.username == "alice"]
    for transport in (proto.transport.transport, conn.transport.transport):
        sock = transport.getHandle()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    await conn.close()
