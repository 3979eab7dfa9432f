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
get minimal fake results; ``msg.send`` is re-broadcast as
``{"event": "msg", "data": {"message": {...}}}`` built from its args, then
answered ``{msg_id, seq, ts}``. Anything else is answered ``{}``.

Run: ``python bench/bare_fanout_server.py --port 5443 --data-dir /tmp/bare``
(the CA for clients is then ``/tmp/bare/tls/ca.pem``).
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

from chatnet.wire.certs import ensure_dev_pki
from chatnet.wire.tls import server_tls_options

_PREFIX = struct.Struct("!I")
ROOM_ID = 1


def _frame(payload: dict[str, Any]) -> bytes:
    data = msgpack.packb(payload, use_bin_type=True)
    return _PREFIX.pack(len(data)) + data


def _room() -> dict[str, Any]:
    return {"room_id": ROOM_ID, "kind": "group", "name": "bench", "topic": "",
            "visibility": "public", "owner": "bench", "members_count": 0, "created_ts": 0}


class BareConnection(Int32StringReceiver):
    """One connection: decode the request, answer, fan out ``msg.send``."""

    MAX_LENGTH = 1024 * 1024
    factory: BareFactory

    def __init__(self) -> None:
        self.username = ""

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.members.discard(self)

    def _answer(self, request_id: Any, result: dict[str, Any]) -> None:
        if request_id is not None:
            self.transport.write(_frame({"id": request_id, "result": result}))  # type: ignore[union-attr]

    def _logged_in(self, username: str) -> dict[str, Any]:
        self.username = username
        self.factory.members.add(self)
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
            event = _frame({"event": "msg", "data": {"message": {
                "room_id": args.get("room_id", ROOM_ID), "msg_id": seq, "seq": seq,
                "sender": self.username, "ts": ts, "body": args.get("body", ""),
                "client_msg_id": args.get("client_msg_id", "")}}})
            for member in tuple(factory.members):
                member.transport.write(event)  # type: ignore[union-attr]
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
            self._answer(request_id, _room())
        else:
            self._answer(request_id, {})


class BareFactory(Factory):
    protocol = BareConnection
    noisy = False

    def __init__(self) -> None:
        self.members: set[BareConnection] = set()
        self.seq = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5443)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="the development PKI is created (or reused) in DATA_DIR/tls")
    args = parser.parse_args(argv)
    pki = ensure_dev_pki(args.data_dir / "tls")
    options = server_tls_options(pki.server_cert, pki.server_key)
    endpoint = endpoints.SSL4ServerEndpoint(reactor, args.port, options,
                                            interface=args.interface)

    def listening(port: Any) -> None:
        print(f"bare fan-out server listening on {args.interface}:{port.getHost().port}",
              flush=True)

    def failed(failure: Any) -> None:
        print(f"cannot listen: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()  # type: ignore[attr-defined]

    endpoint.listen(BareFactory()).addCallbacks(listening, failed)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
