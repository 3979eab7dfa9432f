"""Hypothesis strategies for what a peer can put on the wire (PROTOCOL.md 1-2).

Two families:

* *hostile* values — anything msgpack can carry (:func:`wire_values`), and any
  Python value a decoder could hand the validator (:func:`python_values`,
  with integers past 64 bits), for properties of the form "never crashes";
* *valid* values drawn from an op's own argument schema (:func:`valid_args`),
  so that a property can check that the validator accepts what its schema
  promises to accept, and so that the dispatcher gets past validation into the
  services.

Used by ``tests/core/test_fuzz_properties.py`` and by ``fuzz/seeds.py``.
"""

from __future__ import annotations

import functools
from typing import Any

import msgpack
from hypothesis import strategies as st

from chatnet.reactions import canonical_emoji
from chatnet.wire.framing import PREFIX_SIZE
from chatnet.wire.ops import OPS, TEXT_RULES, USERNAME_RE, Field, Op

#: Integers at the edges the wire and the validator care about: 31, 53, 63 and
#: 64 bits, each side of zero, and one past each bound.
EDGE_INTS = tuple(sorted({0, 1, -1, 2, 32, 200, 201, 86400, 86401,
                          2**31 - 1, 2**31, 2**31 + 1, 2**32, 2**53, 2**53 + 1,
                          2**63 - 1, 2**63, 2**64 - 1, -(2**31), -(2**63)}))
#: Integers msgpack can encode.
WIRE_INT_MIN, WIRE_INT_MAX = -(2**63), 2**64 - 1

wire_ints = st.one_of(st.sampled_from(EDGE_INTS),
                      st.integers(min_value=WIRE_INT_MIN, max_value=WIRE_INT_MAX))

_wire_scalars = st.one_of(
    st.none(), st.booleans(), wire_ints, st.floats(), st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=8)),
)
_wire_keys = st.one_of(st.text(max_size=12), wire_ints, st.binary(max_size=8), st.none(),
                       st.booleans())


def wire_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Any value msgpack can encode: nil, bool, 64-bit ints, floats, str, bin,
    ext, arrays and maps (with keys of any scalar type), nested."""
    return st.recursive(
        _wire_scalars,
        lambda children: st.one_of(st.lists(children, max_size=6),
                                   st.dictionaries(_wire_keys, children, max_size=6)),
        max_leaves=max_leaves)


def python_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Like :func:`wire_values`, but integers of any size and tuples as well
    (what a validator could be handed by a decoder other than ours)."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_INTS),
                        st.floats(), st.text(max_size=40), st.binary(max_size=40))
    keys = st.one_of(st.text(max_size=12), st.integers(), st.binary(max_size=8))
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=6),
                                   st.lists(children, max_size=4).map(tuple),
                                   st.dictionaries(keys, children, max_size=6)),
        max_leaves=max_leaves)


# -- values an op's schema accepts ---------------------------------------------------------

@functools.cache
def _allowed_char(text: str) -> st.SearchStrategy[str]:
    """Characters the text rule ``text`` allows (:data:`TEXT_RULES`)."""
    refused = TEXT_RULES[text]
    if refused is None:
        return st.characters(exclude_categories=("Cs",))
    # Excluded up front rather than filtered: a filter that rejects a few
    # percent of characters rejects most 64-character strings.
    excluded = "".join(c for c in map(chr, range(0x30000)) if refused.search(c))
    return st.characters(exclude_categories=("Cs",), exclude_characters=excluded).filter(
        lambda c: refused.search(c) is None)


def canonical_text(f: Field, value: str) -> str:
    """What :meth:`Field.check` makes of an accepted string (fold, strip)."""
    if f.fold:
        value = value.strip().casefold()
    elif f.text in ("line", "lines"):
        value = value.strip()
    if f.convert is not None:
        value = f.convert(value)
    return value


def _text_fits(f: Field, value: str) -> bool:
    canonical = canonical_text(f, value)
    if f.max_len is not None and len(canonical) > f.max_len:
        return False
    return len(canonical) >= f.min_len


def valid_value(f: Field) -> st.SearchStrategy[Any]:
    """Values of field ``f`` that its schema accepts, edges included (the
    longest string, the largest list, the bounds of an int)."""
    kind = f.kind
    if kind == "str":
        if f.choices is not None:
            return st.sampled_from(sorted(f.choices))
        if f.convert is canonical_emoji:
            # One emoji each: plain, unqualified, skin tone, flag, ZWJ family, keycap.
            return st.sampled_from(("👍", "❤", "❤️", "👍🏽", "🇫🇷",
                                    "👨\u200d👩\u200d👧", "1️⃣", "🎉"))
        if f.pattern is USERNAME_RE:
            # Accepted after folding: upper case and surrounding spaces are fine.
            return st.tuples(st.from_regex(USERNAME_RE, fullmatch=True), st.booleans(),
                             st.sampled_from(("", " ", "\t"))).map(
                lambda t: t[2] + (t[0].upper() if t[1] else t[0]) + t[2])
        if f.pattern is not None:
            refused = TEXT_RULES[f.text]
            return st.from_regex(f.pattern, fullmatch=True).filter(
                lambda v: _text_fits(f, v) and (refused is None or not refused.search(v)))
        top = f.max_len if f.max_len is not None else 1000
        edges = [st.just("x" * top), st.just("y" * max(f.min_len, 1))]
        return st.one_of(st.text(_allowed_char(f.text), min_size=f.min_len,
                                 max_size=min(top, 80)),
                         *edges).filter(lambda v: _text_fits(f, v))
    if kind == "int":
        low = f.minimum if f.minimum is not None else -(2**63)
        high = f.maximum if f.maximum is not None else 2**63 - 1
        return st.one_of(st.sampled_from((low, high)), st.integers(low, high),
                         st.sampled_from([n for n in EDGE_INTS if low <= n <= high] or [low]))
    if kind == "bool":
        return st.booleans()
    if kind == "bin":
        top = f.max_len if f.max_len is not None else 1024
        return st.one_of(st.binary(max_size=min(top, 64)), st.just(b"\0" * top))
    if kind == "list":
        item = valid_value(f.item) if f.item is not None else wire_values(5)
        top = f.max_len if f.max_len is not None else 20
        return st.one_of(st.lists(item, min_size=f.min_len, max_size=min(top, 8)),
                         item.map(lambda v: [v] * top))
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), wire_values(5), max_size=4)
    raise AssertionError(f"no strategy for field kind {kind!r}")


@st.composite
def valid_args(draw: st.DrawFn, op: Op, extra_keys: bool = True,
               known: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """An ``args`` map that ``op``'s schema accepts: every required field, each
    optional one present, absent or nil, and (``extra_keys``) unknown keys,
    which PROTOCOL.md 2 says are ignored.

    Args:
        known: values that exist on the server, by field name (``room_id``,
            ``username``...): used half the time, so that requests get past
            ``not_found`` into the services' other branches.
    """
    args: dict[str, Any] = {}
    for f in op.args:
        if f.required or draw(st.booleans()):
            if known and known.get(f.name) and draw(st.booleans()):
                args[f.name] = draw(st.sampled_from(known[f.name]))
                continue
            args[f.name] = draw(valid_value(f))
        elif draw(st.booleans()):
            args[f.name] = None
    if extra_keys:
        names = {f.name for f in op.args}
        extra = draw(st.dictionaries(st.text(max_size=10).filter(lambda k: k not in names),
                                     wire_values(4), max_size=2))
        args.update(extra)
    return args


@st.composite
def near_args(draw: st.DrawFn, op: Op) -> dict[str, Any]:
    """An ``args`` map where each field is valid, hostile or missing: the
    validator has to find the one bad field among good ones."""
    args: dict[str, Any] = {}
    for f in op.args:
        choice = draw(st.integers(0, 3))
        if choice == 0:
            args[f.name] = draw(valid_value(f))
        elif choice == 1:
            args[f.name] = draw(wire_values(6))
    return args


def op_names() -> st.SearchStrategy[str]:
    """Op names: every op of the registry, and names it does not have."""
    return st.one_of(st.sampled_from(sorted(OPS)), st.text(max_size=20),
                     st.sampled_from(sorted(OPS)).map(lambda n: n + "x"))


@st.composite
def request_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """A request-like map: ``id`` (valid, edge, ill-typed or absent), ``op``
    (known, unknown or ill-typed) and ``args`` (valid, near-valid or hostile)."""
    message: dict[Any, Any] = {}
    if draw(st.integers(0, 4)):
        message["id"] = draw(st.one_of(st.integers(1, 50), wire_ints, _wire_scalars))
    if draw(st.integers(0, 6)):
        message["op"] = draw(st.one_of(op_names(), _wire_scalars))
    name = message.get("op")
    op = OPS.get(name) if isinstance(name, str) else None
    if draw(st.integers(0, 5)):
        if op is not None:
            message["args"] = draw(st.one_of(valid_args(op), near_args(op), wire_values(8)))
        else:
            message["args"] = draw(wire_values(8))
    if draw(st.integers(0, 5)) == 0:
        message.update(draw(st.dictionaries(_wire_keys, wire_values(4), max_size=2)))
    return message


def packed(value: Any) -> bytes:
    """``value`` as msgpack, the way peers encode (str as str, bytes as bin)."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def prefixed(payload: bytes) -> bytes:
    """One frame: the 4-byte big-endian length, then ``payload``."""
    return len(payload).to_bytes(PREFIX_SIZE, "big") + payload


@st.composite
def frame_streams(draw: st.DrawFn) -> list[bytes]:
    """A list of frames, each usually well framed: request maps, any msgpack
    value, raw bytes; now and then a bad length (0, huge, short) or junk."""
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            frames.append(prefixed(packed(draw(request_maps()))))
        elif kind == 6:
            frames.append(prefixed(packed(draw(wire_values()))))
        elif kind == 7:
            frames.append(prefixed(draw(st.binary(min_size=1, max_size=40))))
        elif kind == 8:
            length = draw(st.sampled_from((0, 1, 2**20, 2**20 + 1, 2**32 - 1)))
            frames.append(length.to_bytes(PREFIX_SIZE, "big") + draw(st.binary(max_size=8)))
        else:
            frames.append(draw(st.binary(max_size=12)))
    return frames


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    """``data`` cut at ``positions`` (any ints; taken modulo the length + 1)."""
    points = sorted({p % (len(data) + 1) for p in positions})
    pieces: list[bytes] = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces
