"""Write the seed corpora and the libFuzzer dictionary for the fuzz targets.

``python fuzz/seeds.py [DIRECTORY]`` (default ``fuzz/corpus``) writes

* ``DIRECTORY/wire_server/``: for every op of :data:`chatnet.wire.ops.OPS`, a
  request with arguments its schema accepts, in each connection state
  (framed here and length-prefixed), a few pipelined and notification inputs;
* ``DIRECTORY/client_core/``: answers, errors and events a server sends;
* ``DIRECTORY/wire.dict``: the msgpack of every op, field and error-code name,
  and the framing edges, for ``-dict=``.

Seeds are derived from the registry, so they follow it when ops change.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatnet.errors import ErrorCode
from chatnet.wire.ops import OPS, USERNAME_RE, Field, Op
from fuzz.inputs import MSG_ID, ROOM_ID, make_input
from tests.support.server import PASSWORD

#: Connection states of the wire_server target (mode % 3).
FRESH, ANONYMOUS, LOGGED_IN = 0, 1, 2


def seed_value(f: Field) -> Any:
    """A value of ``f`` that its schema accepts (placeholders for existing ids)."""
    if f.name in ("room_id",):
        return ROOM_ID
    if f.name in ("msg_id", "reply_to"):
        return MSG_ID
    if f.kind == "str":
        if f.choices is not None:
            return sorted(f.choices)[0]
        if f.pattern is USERNAME_RE:
            return "bob"
        if f.name == "sha256":
            return hashlib.sha256(b"fuzz").hexdigest()
        return "x" * max(f.min_len, 1)
    if f.kind == "int":
        if f.name == "protocol":
            return 1
        low = f.minimum if f.minimum is not None else 0
        return max(low, min(1, f.maximum if f.maximum is not None else 1))
    if f.kind == "bool":
        return True
    if f.kind == "bin":
        return b"fuzz"
    if f.kind == "list":
        return [seed_value(f.item)] if f.item is not None else []
    return {}


def request(request_id: int | None, op: Op) -> bytes:
    """The msgpack of a request (or notification, without id) for ``op``."""
    message: dict[str, Any] = {"op": op.name,
                               "args": {f.name: seed_value(f) for f in op.args}}
    if request_id is not None:
        message["id"] = request_id
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


HELLO = msgpack.packb({"id": 1, "op": "session.hello",
                       "args": {"protocol": 1, "client": "fuzz"}})


def server_seeds() -> dict[str, bytes]:
    """Named inputs for the wire_server target."""
    seeds: dict[str, bytes] = {}
    for name, op in sorted(OPS.items()):
        seeds[f"{name}-logged-in"] = make_input(LOGGED_IN, [request(5, op)])
        seeds[f"{name}-logged-in-prefixed"] = make_input(LOGGED_IN, [request(5, op)],
                                                         framed_here=False)
        seeds[f"{name}-anonymous"] = make_input(ANONYMOUS, [request(5, op)])
        seeds[f"{name}-fresh"] = make_input(FRESH, [HELLO, request(5, op)])
    ops = [OPS[n] for n in ("room.list", "msg.send", "msg.history", "msg.typing")]
    seeds["pipelined"] = make_input(LOGGED_IN, [request(i + 5, op) for i, op in enumerate(ops)])
    seeds["pipelined-in-pieces"] = make_input(LOGGED_IN, [request(i + 5, op)
                                                          for i, op in enumerate(ops)], size=3)
    # The target's account (tests/support/wire_checks.py): a login that succeeds.
    login = msgpack.packb({"id": 2, "op": "auth.login",
                           "args": {"username": "alice", "password": PASSWORD}})
    seeds["login"] = make_input(FRESH, [HELLO, login, request(3, OPS["room.list"])])
    seeds["notification"] = make_input(LOGGED_IN, [request(None, OPS["msg.typing"])])
    seeds["duplicate-id"] = make_input(LOGGED_IN, [request(5, OPS["room.list"])] * 2)
    return seeds


def client_seeds() -> dict[str, bytes]:
    """Named inputs for the client_core target (mode = requests pending)."""
    def packed(value: Any) -> bytes:
        data: bytes = msgpack.packb(value, use_bin_type=True)
        return data

    return {
        "result": make_input(2, [packed({"id": 1, "result": {"ts": 1}})]),
        "error": make_input(2, [packed({"id": 2, "error": {
            "code": "rate_limited", "message": "slow down",
            "details": {"retry_after_ms": 250}}})]),
        "event": make_input(0, [packed({"event": "msg", "data": {"message": {
            "room_id": 1, "msg_id": 2, "seq": 1, "sender": "bob", "ts": 0, "body": "hi",
            "client_msg_id": "c"}}})]),
        "mixed-prefixed": make_input(3, [packed({"event": "typing", "data": {}}),
                                         packed({"id": 3, "result": {}}),
                                         packed({"id": 1, "error": "odd"})],
                                     framed_here=False, size=5),
    }


def dictionary() -> list[bytes]:
    """Tokens for libFuzzer's ``-dict``: msgpack of the names a peer uses."""
    names: set[str] = {"id", "op", "args", "result", "error", "event", "data", "code",
                       "message", "details"}
    for op in OPS.values():
        names.add(op.name)
        names.update(f.name for f in op.args)
        for f in op.args:
            names.update(f.choices or ())
    names.update(code.value for code in ErrorCode)
    names.update(("alice", "bob", PASSWORD))
    tokens = [msgpack.packb(n) for n in sorted(names)]
    tokens += [msgpack.packb(n) for n in (2**31, 2**53, 2**63 - 1, 2**64 - 1, -1, ROOM_ID,
                                          MSG_ID)]
    tokens += [b"\x00\x00\x00\x00", b"\x00\x10\x00\x01", b"\xff\xff\xff\xff", b"\xc1\xc1"]
    return tokens


def write(directory: Path) -> None:
    """Write both corpora and the dictionary under ``directory``."""
    for target, seeds in (("wire_server", server_seeds()), ("client_core", client_seeds())):
        folder = directory / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / f"seed-{name}").write_bytes(data)
    lines = ['"' + "".join(f"\\x{b:02x}" for b in token) + '"' for token in dictionary()]
    (directory / "wire.dict").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "corpus"
    write(out)
    print(f"seeds and wire.dict written to {out}")
