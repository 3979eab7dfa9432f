"""Paged lists: opaque cursors and pages that fit in a frame by construction.

A paged op (docs/protocol.md, "Paging") takes ``cursor?`` and ``limit?`` and
answers ``{<items>: [...], next_cursor?}``. The cursor is opaque to clients:
here it is the page's last sort key, msgpack-encoded and base64url'd, so a
server can change what it holds without clients noticing. ``next_cursor`` is
there only when more may follow.

A page holds at most ``limit`` items *and* at most what fits in one frame:
:func:`fit_page` measures each item's encoded size as it adds it and stops
early, so no list answer can exceed ``max_frame`` however large its items are.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from chatnet.errors import bad_request
from chatnet.wire.codec import pack, unpack
from chatnet.wire.ops import MAX_CURSOR, MAX_ID

#: Bytes an array header may grow by beyond the one byte of an empty array.
_ARRAY_HEADER = 4


def encode_cursor(*key: int | str) -> str:
    """An opaque cursor for the sort key ``key`` of a page's last item."""
    packed = pack({"k": list(key)})
    cursor = base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")
    if len(cursor) > MAX_CURSOR:  # pragma: no cover - keys are bounded far below
        raise ValueError("cursor key too long")
    return cursor


def decode_cursor(cursor: str, *kinds: type) -> tuple[Any, ...]:
    """The sort key in a cursor from :func:`encode_cursor`.

    Args:
        cursor: the client's ``cursor`` argument.
        kinds: the expected type of each part of the key (``int``, ``str``).

    Raises:
        ChatError: ``bad_request`` naming ``cursor`` if it is not one this op
            handed out.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = unpack(raw)["k"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise bad_request("cursor is not valid: pass next_cursor from the previous page") \
            from None
    if (not isinstance(key, list) or len(key) != len(kinds)
            or not all(isinstance(part, kind) and not isinstance(part, bool)
                       for part, kind in zip(key, kinds, strict=True))):
        raise bad_request("cursor is not valid: pass next_cursor from the previous page")
    return tuple(key)


def fit_page(items: Sequence[dict[str, Any]], key: str, max_frame: int,
             extra: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """The longest prefix of ``items`` whose answer fits in ``max_frame``.

    The answer is ``{"id": ..., "result": {key: items, "next_cursor": ...}}``
    plus ``extra`` in ``result``; it is sized for the largest id and cursor, so
    whatever the real ones are, the frame fits. The first item is always
    kept, so that a page is never empty while items remain (an item that
    alone exceeds the frame gets ``too_large`` from the wire layer).

    Args:
        items: the candidate items, in order.
        key: the result's list key (``rooms``, ``members`` ...).
        max_frame: the largest payload allowed, bytes.
        extra: other fields of the result.

    Returns:
        ``(page, cut_short)``: the items that fit, and whether any were left out.
    """
    envelope = {"id": MAX_ID, "result": {key: [], "next_cursor": "x" * MAX_CURSOR,
                                          **(extra or {})}}
    size = len(pack(envelope)) + _ARRAY_HEADER
    page: list[dict[str, Any]] = []
    for item in items:
        size += len(pack(item))
        if size > max_frame and page:
            return page, True
        page.append(item)
    return page, False
