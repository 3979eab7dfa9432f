"""The floor for ``bench/fanout.py``: a bare Twisted TLS fan-out server.

It does only what any TLS fan-out server in Python/Twisted must do: TLS (the
same development PKI and the same ``CertificateOptions`` as chatnet, from
:mod:`chatnet.wire.certs` and :mod:`chatnet.wire.tls`), ``Int32StringReceiver``
framing, TCP_NODELAY, one msgpack decode per request and, for ``msg.send``,
one msgpack encode of the ``msg`` event whose bytes are written to every
logged-in connection. No authentication, no storage, no validation, no rate
limit, no output bound.

It speaks just enough of PROTOCOL.md that the same load generator drives it:
``session.hello``, ``session.ping``, ``auth.register``, ``auth.login``,
``auth.resume`` (the token is the username), ``room.create``, ``room.join``
get minimal fake results (rooms are kept in memory: who is in which);
``msg.send`` is re-broadcast to the room's logged-in members as
``{"event": "msg", "data": {"message": {...}}}`` built from its args, then
answered ``{msg_id, seq, ts}``. Anything else is answered ``{}``.

Run: ``python bench/bare_fanout_server.py --port 5443 --data-dir /tmp/bare``
(the CA for clients is then ``/tmp/bare/tls/ca.pem``).

``--tls-writes`` picks how frames reach TLS; the default is what Twisted does
for any TLS server and is *the* baseline. The others are experiments that show
what a change of write strategy would be worth (``docs/benchmarks.md``):

``buffered`` (default)
    ``SSL4ServerEndpoint``: Twisted's ``BufferingTLSTransport`` buffers each
    connection's small writes and flushes them from a ``callLater(0)`` of its
    own, so one fan-out schedules one delayed call per recipient.
``direct``
    TCP endpoint wrapped in ``TLSMemoryBIOFactory`` with the plain
    ``TLSMemoryBIOProtocol``: every frame is encrypted at once (one TLS record
    per frame, no delayed calls).
``batched``
    like ``direct``, but the fan-out queues frames per connection and one
    ``callLater(0)`` per reactor turn encrypts each connection's queue as one
    write (one TLS record per connection per turn, one delayed call per turn).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from twisted.internet import endpoints, reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from chatnet.wire.certs import ensure_dev_pki
from chatnet.wire.tls import server_tls_options

_PREFIX = struct.Struct("!I")


def _frame(payload: dict[str, Any]) -> bytes:
    data = msgpack.packb(payload, use_bin_type=True)
    return _PREFIX.pack(len(data)) + data


def _room(room_id: int) -> dict[str, Any]:
    return {"room_id": room_id, "kind": "group", "name": "bench", "topic": "",
            "visibility": "public", "owner": "bench", "members_count": 0, "created_ts": 0}


class BareConnection(Int32StringReceiver):
    """One connection: decode the request, answer, fan out ``msg.send``."""

    MAX_LENGTH = 1024 * 1024
    factory: BareFactory

    def __init__(self) -> None:
        self.username = ""
        self.pending: list[bytes] = []

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.send = (self._queue if self.factory.batched
                     else self.transport.write)  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        for room_id in self.factory.rooms_of.get(self.username, ()):
            self.factory.online[room_id].discard(self)

    def _queue(self, frame: bytes) -> None:
        if not self.pending:
            self.factory.dirty.append(self)
            self.factory.schedule_flush()
        self.pending.append(frame)

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if self.transport is not None:
                self.transport.write(data)

    def _answer(self, request_id: Any, result: dict[str, Any]) -> None:
        if request_id is not None:
            self.send(_frame({"id": request_id, "result": result}))

    def _logged_in(self, username: str) -> dict[str, Any]:
        self.username = username
        for room_id in self.factory.rooms_of.get(username, ()):
            self.factory.online[room_id].add(self)
        return {"user_id": 1, "username": username, "display_name": username,
                "session_id": "bare", "token": username, "roles": []}

    def stringReceived(self, data: bytes) -> None:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
        op = message.get("op")
        request_id = message.get("id")
        args = message.get("args") or {}
        if op == "msg.send":
            factory = self.factory
            factory.seq += 1
            seq = factory.seq
            ts = int(time.time() * 1000)
            room_id = args.get("room_id")
            event = _frame({"event": "msg", "data": {"message": {
                "room_id": room_id, "msg_id": seq, "seq": seq,
                "sender": self.username, "ts": ts, "body": args.get("body", ""),
                "client_msg_id": args.get("client_msg_id", "")}}})
            for member in tuple(factory.online.get(room_id, ())):
                member.send(event)
            self._answer(request_id, {"msg_id": seq, "seq": seq, "ts": ts})
        elif op == "session.hello":
            self._answer(request_id, {"protocol": 1, "server": "bare-fanout",
                                      "max_frame": self.MAX_LENGTH, "features": [],
                                      "registration": True})
        elif op == "session.ping":
            self._answer(request_id, {"ts": int(time.time() * 1000)})
        elif op == "auth.register":
            self._answer(request_id, {"user_id": 1, "username": args.get("username", "")})
        elif op == "auth.login":
            self._answer(request_id, self._logged_in(str(args.get("username", ""))))
        elif op == "auth.resume":
            self._answer(request_id, self._logged_in(str(args.get("token", ""))))
        elif op in ("room.create", "room.join"):
            factory = self.factory
            if op == "room.create":
                room_id = factory.next_room = factory.next_room + 1
            else:
                room_id = int(args.get("room_id", 0))
            factory.rooms_of.setdefault(self.username, set()).add(room_id)
            factory.online.setdefault(room_id, set()).add(self)
            self._answer(request_id, _room(room_id))
        else:
            self._answer(request_id, {})


class BareFactory(Factory):
    protocol = BareConnection
    noisy = False

    def __init__(self, batched: bool = False) -> None:
        self.rooms_of: dict[str, set[int]] = {}  # username -> room ids
        self.online: dict[int, set[BareConnection]] = {}  # room id -> logged-in members
        self.next_room = 0
        self.seq = 0
        self.batched = batched
        self.dirty: list[BareConnection] = []
        self._flush_call: Any = None

    def schedule_flush(self) -> None:
        if self._flush_call is None:
            self._flush_call = reactor.callLater(0, self._flush)  # type: ignore[attr-defined]

    def _flush(self) -> None:
        self._flush_call = None
        dirty, self.dirty = self.dirty, []
        for connection in dirty:
            connection.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5443)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="the development PKI is created (or reused) in DATA_DIR/tls")
    parser.add_argument("--tls-writes", choices=("buffered", "direct", "batched"),
                        default="buffered", help="write strategy (module docstring)")
    args = parser.parse_args(argv)
    pki = ensure_dev_pki(args.data_dir / "tls")
    options = server_tls_options(pki.server_cert, pki.server_key)
    factory: Any = BareFactory(batched=args.tls_writes == "batched")
    if args.tls_writes == "buffered":
        endpoint = endpoints.SSL4ServerEndpoint(reactor, args.port, options,
                                                interface=args.interface)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.interface)
        factory = TLSMemoryBIOFactory(options, False, factory)
        factory.protocol = TLSMemoryBIOProtocol  # no per-connection write aggregation

    def listening(port: Any) -> None:
        print(f"bare fan-out server listening on {args.interface}:{port.getHost().port}",
              flush=True)

    def failed(failure: Any) -> None:
        print(f"cannot listen: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()  # type: ignore[attr-defined]

    endpoint.listen(factory).addCallbacks(listening, failed)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
