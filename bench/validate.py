"""Decode-and-check per request: chatnet's hand-written validator against msgspec.

(A) the current path: ``codec.unpack`` (msgpack) then
    ``OPS[op].validate(args)`` (chatnet/wire/ops.py);
(B) a msgspec prototype built from the same op registry: one
    ``msgspec.msgpack.Decoder`` for the envelope (``id``, ``op``, ``args``
    kept raw), then one typed ``Struct`` decoder per op whose fields carry the
    bounds as ``msgspec.Meta`` (lengths, ``ge``/``le``, the text rules as
    patterns, choices as ``Literal``), so that decoding and checking are one
    pass in C; what msgspec cannot express (case folding and stripping, a nil
    optional field taking its default, bounds that apply after stripping) is
    finished in Python, and msgspec's ``ValidationError`` is translated into
    chatnet's ``bad_request`` messages that name the field (PROTOCOL.md 2);
(B1) for reference, (B)'s two decoders without the Python finish and without
    translating errors: the floor msgspec sets.

It prints µs per request and requests/s for a mix of requests (``msg.send``
with body, mentions and attachments, ``msg.history``, ``room.create`` with
members, ``file.upload.chunk`` with 256 KiB, ``auth.login``, and two refused
requests), the lines of code of each validator, and a differential run that
feeds both validators the same Hypothesis-generated arguments and counts where
their outcomes differ, by kind.

    PYTHONPATH=$PWD .venv/bin/python bench/validate.py [--repeat 7] [--differential 3000]

Needs the ``bench`` extra (msgspec) and, for the differential run, the
``test`` extra (Hypothesis): ``pip install -e '.[test,bench]'``.

The prototype lives here on purpose: ops.py is not changed (docs/benchmarks.md,
"Argument validation: msgspec or not", has the figures and the decision).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgpack
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatnet.errors import ChatError, ErrorCode, bad_request  # noqa: E402
from chatnet.wire import ops as ops_module  # noqa: E402
from chatnet.wire.codec import unpack  # noqa: E402
from chatnet.wire.ops import OPS, TEXT_RULES, Field, Op  # noqa: E402

# == (B) the msgspec prototype ====================================================== PROTOTYPE


class Envelope(msgspec.Struct):
    """A request or notification; ``args`` stays raw until the op is known."""

    id: Any = None
    op: Any = None
    args: msgspec.Raw = msgspec.Raw(b"\x80")


_NIL = b"\xc0"
_EMPTY_MAP = b"\x80"


def _allowed(text: str) -> str | None:
    """The text rule ``text`` as a pattern matching the whole allowed string."""
    refused = TEXT_RULES[text]
    if refused is None:
        return None
    # re.search with \A...\Z: msgspec searches, and "$" would let a final "\n" by.
    return r"\A[^" + refused.pattern[1:-1] + r"]*\Z"


def _needs_finish(f: Field) -> bool:
    return f.kind == "str" and (f.fold or f.text in ("line", "lines"))


def field_type(f: Field) -> Any:
    """The msgspec type of a field: its kind, with its bounds as ``Meta``."""
    if f.kind == "str":
        if f.choices is not None:
            return Literal[tuple(sorted(f.choices))]
        meta: dict[str, Any] = {}
        if not _needs_finish(f):
            # Text that is stripped or folded is checked after the finish.
            pattern = _allowed(f.text)
            if pattern is not None:
                meta["pattern"] = pattern
            meta["min_length"] = f.min_len
            if f.max_len is not None:
                meta["max_length"] = f.max_len
        return Annotated[str, msgspec.Meta(**meta)] if meta else str
    if f.kind == "int":
        return Annotated[int, msgspec.Meta(ge=f.minimum, le=f.maximum)]
    if f.kind == "bool":
        return bool
    if f.kind == "bin":
        return Annotated[bytes, msgspec.Meta(max_length=f.max_len)]
    if f.kind == "list":
        item = field_type(f.item) if f.item is not None else Any
        return Annotated[list[item], msgspec.Meta(min_length=f.min_len,  # type: ignore[valid-type]
                                                  max_length=f.max_len)]
    return dict


def _finish_text(f: Field, value: str, label: str) -> str:
    """Fold or strip, then the bounds msgspec could not check before."""
    value = value.strip().casefold() if f.fold else value.strip()
    refused = TEXT_RULES[f.text]
    found = refused.search(value) if refused is not None else None
    if found is not None:
        raise bad_request(f"{label} must not contain the character U+{ord(found.group()):04X}")
    if len(value) < f.min_len:
        raise bad_request(f"{label} must not be empty" if f.min_len == 1
                          else f"{label} must be at least {f.min_len} characters")
    if f.max_len is not None and len(value) > f.max_len:
        raise bad_request(f"{label} must be at most {f.max_len} characters")
    if f.pattern is not None and not f.pattern.fullmatch(value):
        raise bad_request(f"{label} has characters that are not allowed")
    return value


class ArgsDecoder:
    """One op's typed decoder, and what is finished in Python afterwards."""

    def __init__(self, op: Op) -> None:
        self.op = op
        fields: list[Any] = []
        for f in op.args:
            t = field_type(f)
            fields.append((f.name, t) if f.required else (f.name, t | None, None))
        self.struct = msgspec.defstruct(op.name.replace(".", "_") + "_args", fields,
                                        kw_only=True)
        self.decoder = msgspec.msgpack.Decoder(self.struct)
        self.by_name = {f.name: f for f in op.args}
        self.finish: list[tuple[str, Callable[[Any], Any]]] = []
        for f in op.args:
            if not f.required and f.default is not None:
                self.finish.append((f.name, lambda v, d=f.default: d if v is None else v))
            if _needs_finish(f):
                self.finish.append((f.name, lambda v, f=f: None if v is None
                                    else _finish_text(f, v, f.name)))
            elif f.kind == "list" and f.item is not None and _needs_finish(f.item):
                self.finish.append((f.name, lambda v, f=f: None if v is None else [
                    _finish_text(f.item, x, f"{f.name}[{i}]")  # type: ignore[arg-type]
                    for i, x in enumerate(v)]))

    def decode(self, raw: bytes | msgspec.Raw) -> dict[str, Any]:
        """The clean arguments, or ChatError(bad_request) naming the field."""
        if len(raw) == 1 and bytes(raw) == _NIL:  # nil args count as none
            raw = _EMPTY_MAP
        try:
            args = self.decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise translate(exc, self) from None
        clean = msgspec.structs.asdict(args)
        for name, fix in self.finish:
            clean[name] = fix(clean[name])
        return clean


_AT = re.compile(r"^(?P<what>.*?)(?: - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`)?$")
_KINDS = {"int": "must be an integer", "str": "must be a string",
          "bool": "must be true or false", "bytes": "must be binary", "array": "must be a list",
          "object": "must be a map"}
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], Field | None], str]]] = [
    (re.compile(r"Expected `(\w+)(?: \| null)?`, got `(\w+)`"),
     lambda m, f: "is required" if m[2] in ("None", "null") else _KINDS.get(m[1], "is invalid")),
    (re.compile(r"Expected `int` >= (-?\d+)"), lambda m, f: f"must be at least {m[1]}"),
    (re.compile(r"Expected `int` <= (-?\d+)"), lambda m, f: f"must be at most {m[1]}"),
    (re.compile(r"Expected `str` of length >= (\d+)"),
     lambda m, f: "must not be empty" if m[1] == "1" else f"must be at least {m[1]} characters"),
    (re.compile(r"Expected `str` of length <= (\d+)"),
     lambda m, f: f"must be at most {m[1]} characters"),
    (re.compile(r"Expected `array` of length >= (\d+)"),
     lambda m, f: f"must have at least {m[1]} items"),
    (re.compile(r"Expected `array` of length <= (\d+)"),
     lambda m, f: f"must have at most {m[1]} items"),
    (re.compile(r"Expected `bytes` of length <= (\d+)"),
     lambda m, f: f"must be at most {m[1]} bytes"),
    (re.compile(r"Invalid enum value"),
     lambda m, f: "must be one of " + ", ".join(sorted(f.choices or ())) if f else "is invalid"),
    (re.compile(r"Expected `str` matching regex"),
     lambda m, f: "has characters that are not allowed"),
]
_MISSING = re.compile(r"Object missing required field `(\w+)`")


def translate(exc: msgspec.ValidationError, decoder: ArgsDecoder) -> ChatError:
    """msgspec's "Expected `int`, got `str` - at `$.room_id`" → "room_id must be an integer"."""
    text = str(exc)
    missing = _MISSING.match(text)
    if missing:
        return bad_request(f"{missing[1]} is required")
    parts = _AT.match(text)
    assert parts is not None
    if parts["key"]:
        return bad_request("args must have string keys")
    label = (parts["path"] or "").lstrip(".") or "args"
    f = decoder.by_name.get(label.split("[", 1)[0])
    for rule, message in _RULES:
        found = rule.match(parts["what"])
        if found:
            return bad_request(f"{label} {message(found, f)}")
    return bad_request(f"{label} is invalid")  # pragma: no cover - a message we do not know


ENVELOPE = msgspec.msgpack.Decoder(Envelope)
DECODERS = {name: ArgsDecoder(op) for name, op in OPS.items()}


def msgspec_request(payload: bytes) -> dict[str, Any]:
    """(B): envelope, then the op's typed decoder and the finish."""
    try:
        envelope = ENVELOPE.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"not a request: {exc}") from None
    return DECODERS[envelope.op].decode(envelope.args)

# == end of the prototype ========================================================= PROTOTYPE


def current_request(payload: bytes) -> dict[str, Any]:
    """(A): msgpack, then the hand-written validator."""
    message = unpack(payload)
    return OPS[message["op"]].validate(message.get("args"))


def msgspec_floor(payload: bytes) -> Any:
    """(B1): (B)'s two decoders only."""
    envelope = ENVELOPE.decode(payload)
    return DECODERS[envelope.op].decoder.decode(envelope.args)


# -- the mix ----------------------------------------------------------------------------------

def _request(op: str, args: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb({"id": 7, "op": op, "args": args}, use_bin_type=True)
    return data


ROOM, MSG = 913405233355341824, 913405233396129792
MIX: dict[str, bytes] = {
    "msg.send (body, 3 mentions, 2 attachments)": _request("msg.send", {
        "room_id": ROOM, "body": "Sounds good, let's ship the release notes on Friday. " * 4,
        "client_msg_id": "c-5f2c8386ace0fef5-00042", "reply_to": MSG,
        "mentions": ["alice", "bob.smith", "carol_w"], "attachments": ["f" * 32, "e" * 32]}),
    "msg.history": _request("msg.history", {"room_id": ROOM, "before_seq": 1200, "limit": 50}),
    "room.create (topic, 20 members)": _request("room.create", {
        "name": "release-2026", "topic": "Release planning\nand notes",
        "visibility": "private", "members": [f"member{i:02d}" for i in range(20)]}),
    "file.upload.chunk (256 KiB)": _request("file.upload.chunk", {
        "upload_id": "u" * 32, "offset": 262144, "data": bytes(256 * 1024)}),
    "auth.login": _request("auth.login", {"username": "Alice", "password": "correct horse "
                                          "battery staple"}),
    "refused: room.join room_id str": _request("room.join", {"room_id": "general"}),
    "refused: room.create members[1] int": _request("room.create", {
        "name": "x", "visibility": "public", "members": ["ok", 7]}),
}


def per_request(fn: Callable[[bytes], Any], payload: bytes, repeat: int,
                budget: float = 0.2) -> float:
    """Best of ``repeat`` runs, each ``budget`` seconds long: seconds per call."""
    def call() -> None:
        try:  # noqa: SIM105 - a context manager per call would weigh on the figures
            fn(payload)
        except (ChatError, msgspec.ValidationError):
            pass

    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            call()
        took = time.perf_counter() - start
        if took > budget / 10:
            break
        loops *= 4
    loops = max(1, int(loops * budget / took))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


# -- lines of code --------------------------------------------------------------------------

def code_lines(source: str, start: int = 1, end: int | None = None) -> int:
    """Lines holding code (not blank, not comments, not docstrings) in ``start..end``."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines = source.splitlines()
    end = end or len(lines)
    return sum(1 for n in range(start, end + 1)
               if n not in docstrings and lines[n - 1].strip()
               and not lines[n - 1].strip().startswith("#"))


def validator_sizes() -> tuple[int, int]:
    """(code lines of ops.py's validator, of the prototype above)."""
    source = inspect.getsource(ops_module)
    tree = ast.parse(source)
    total = 0
    for node in tree.body:
        names = {"Field", "Str", "Int", "Bool", "Username", "TEXT_RULES", "_MISSING"}
        name = getattr(node, "name", None)
        if isinstance(node, ast.Assign):
            name = getattr(node.targets[0], "id", None)
        elif isinstance(node, ast.AnnAssign):
            name = getattr(node.target, "id", None)
        if name in names:
            total += code_lines(source, node.lineno, node.end_lineno)
        if name == "Op":  # only its validate method
            for item in node.body:  # type: ignore[attr-defined]
                if getattr(item, "name", None) == "validate":
                    total += code_lines(source, item.lineno, item.end_lineno)
    own = Path(__file__).read_text()
    marks = [i + 1 for i, line in enumerate(own.splitlines()) if line.endswith("PROTOTYPE")]
    return total, code_lines(own, marks[0] + 1, marks[1] - 1)


# -- differential run -----------------------------------------------------------------------

def outcome(fn: Callable[[], dict[str, Any]]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ChatError as error:
        assert error.code is ErrorCode.BAD_REQUEST
        return "refused", error.message


def _shape(message: str) -> str:
    """A refusal without its field name and numbers, to count alike ones together."""
    message = re.sub(r"^\S+ ", "<field> ", message)
    return re.sub(r"U\+[0-9A-F]+", "U+…", re.sub(r"\d+", "N", message))


def differential(examples: int) -> tuple[int, Counter[str]]:
    """Feed both validators the same generated args; count differences by kind."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.support.wire_strategies import near_args, valid_args, wire_values

    differences: Counter[str] = Counter()
    seen = [0]

    @st.composite
    def cases(draw: st.DrawFn) -> tuple[str, Any]:
        name = draw(st.sampled_from(sorted(OPS)))
        op = OPS[name]
        return name, draw(st.one_of(valid_args(op), near_args(op), wire_values(8)))

    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def compare(case: tuple[str, Any]) -> None:
        name, args = case
        payload = msgpack.packb(args, use_bin_type=True)
        seen[0] += 1
        a = outcome(lambda: OPS[name].validate(unpack(payload)))
        try:
            b = outcome(lambda: DECODERS[name].decode(payload))
        except msgspec.DecodeError:
            b = ("refused", "(not decodable)")
        if a == b:
            return
        if a[0] != b[0]:
            message = a[1] if a[0] == "refused" else b[1]
            kind = f"{a[0]} by ops.py, {b[0]} by msgspec: {_shape(message)}"
        elif a[0] == "ok":
            kind = "both accept, different values"
        elif a[1].split()[0] != b[1].split()[0]:
            # Several fields are wrong: ops.py names the first declared, msgspec
            # the first it meets in the map (missing fields last).
            kind = "both refuse, naming a different one of several bad fields"
        else:
            kind = f"both refuse, other words: {_shape(a[1])} / {_shape(b[1])}"
        differences[kind] += 1

    compare()
    return seen[0], differences


#: Behaviours the two could differ on (docs/benchmarks.md): (op, args).
BEHAVIOURS: list[tuple[str, str, dict[Any, Any] | None]] = [
    ("username case-folded and stripped", "user.get", {"username": " Alice "}),
    ("username folding that changes length", "user.get", {"username": "STRAẞE"}),
    ("one-line text stripped", "room.create", {"name": "  ops  ", "visibility": "public"}),
    ("white space only, after stripping", "room.create", {"name": "   ", "visibility": "public"}),
    ("bidi override in a name", "room.create", {"name": "a\u202eb", "visibility": "public"}),
    ("newline at the end of a one-line name", "room.create",
     {"name": "ops\n", "visibility": "public"}),
    ("body kept as sent", "msg.send", {"room_id": 1, "body": " hi\n", "client_msg_id": "c"}),
    ("control character in a body", "msg.send",
     {"room_id": 1, "body": "a\x07b", "client_msg_id": "c"}),
    ("nil optional with a default", "msg.history", {"room_id": 1, "limit": None}),
    ("absent args", "msg.history", None),
    ("nil required", "room.join", {"room_id": None}),
    ("unknown string key", "room.join", {"room_id": 1, "colour": "red"}),
    ("unknown integer key", "room.join", {"room_id": 1, 5: "x"}),
    ("bool for an int", "room.join", {"room_id": True}),
    ("float for an int", "room.join", {"room_id": 1.0}),
    ("int for a bool", "msg.react", {"room_id": 1, "msg_id": 1, "emoji": "👍", "on": 1}),
    ("largest id 2**63-1", "room.join", {"room_id": 2**63 - 1}),
    ("id 2**63", "room.join", {"room_id": 2**63}),
    ("id 2**64-1", "room.join", {"room_id": 2**64 - 1}),
    ("choice not in the list", "presence.set", {"state": "asleep"}),
    ("501 members", "room.create", {"name": "x", "visibility": "public",
                                    "members": ["bob"] * 501}),
]


def behaviours() -> list[tuple[str, str, str]]:
    """(case, ops.py's outcome, msgspec's outcome) for :data:`BEHAVIOURS`."""
    rows = []
    for case, name, args in BEHAVIOURS:
        payload = msgpack.packb(args, use_bin_type=True)
        a = outcome(lambda n=name, p=payload: OPS[n].validate(unpack(p)))
        b = outcome(lambda n=name, p=payload: DECODERS[n].decode(p))
        rows.append((case, *(f"{kind}: {value}" for kind, value in (a, b))))
    return rows


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per case; best is kept")
    parser.add_argument("--differential", type=int, default=3000,
                        help="generated argument maps for the differential run (0: skip)")
    options = parser.parse_args()

    for name, payload in MIX.items():  # both must agree on the mix itself
        a = outcome(lambda p=payload: current_request(p))
        b = outcome(lambda p=payload: msgspec_request(p))
        assert a == b, (name, a, b)

    print(f"Python {platform.python_version()}, msgpack {msgpack.version}, "
          f"msgspec {msgspec.__version__}, {platform.machine()}")
    print(f"{'request':45} {'bytes':>7} {'A µs':>8} {'B µs':>8} {'B1 µs':>8} "
          f"{'A/B':>6} {'A req/s':>10} {'B req/s':>10}")
    totals = [0.0, 0.0, 0.0]
    for name, payload in MIX.items():
        times = [per_request(fn, payload, options.repeat)
                 for fn in (current_request, msgspec_request, msgspec_floor)]
        totals = [t + x for t, x in zip(totals, times, strict=True)]
        a, b, b1 = times
        print(f"{name:45} {len(payload):7d} {a * 1e6:8.2f} {b * 1e6:8.2f} {b1 * 1e6:8.2f} "
              f"{a / b:6.2f} {1 / a:10,.0f} {1 / b:10,.0f}")
    a, b, b1 = (t / len(MIX) for t in totals)
    print(f"{'mix (each request once)':45} {'':7} {a * 1e6:8.2f} {b * 1e6:8.2f} "
          f"{b1 * 1e6:8.2f} {a / b:6.2f} {1 / a:10,.0f} {1 / b:10,.0f}")

    current, prototype = validator_sizes()
    print(f"\nlines of code: ops.py validator {current}, msgspec prototype {prototype} "
          "(without docstrings, comments, blank lines; the op table is shared)")

    print("\nbehaviours (ops.py | msgspec prototype):")
    for case, a_text, b_text in behaviours():
        mark = "  " if a_text == b_text else "≠ "
        print(f"{mark}{case:42} {a_text[:70]:70} | {b_text[:70]}")

    if options.differential:
        total, differences = differential(options.differential)
        print(f"\ndifferential run: {total} generated argument maps, "
              f"{sum(differences.values())} with different outcomes")
        for kind, count in differences.most_common():
            print(f"  {count:6d}  {kind}")


if __name__ == "__main__":
    main()
