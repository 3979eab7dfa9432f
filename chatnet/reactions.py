"""What a reaction may be, and how many a message may carry (PROTOCOL.md 6, ``msg.react``).

Shared by the server (which refuses anything else) and the clients (which offer
only what the server accepts). An emoji is one entry of the Unicode emoji list
as the ``emoji`` package ships it: single code points, skin-tone variants,
ZWJ sequences, flags and keycaps, each one grapheme cluster. Unqualified and
minimally qualified spellings (``❤`` without its variation selector) are
accepted and stored as the fully qualified one (``❤️``), so that one heart
gives one chip whatever keyboard typed it. Emoji components on their own (a
bare skin-tone swatch, a hair style) are refused: they are parts of emoji, not
reactions.

The limits below are the server's; docs/protocol.md section 6 lists them.
"""

from __future__ import annotations

import emoji as emoji_data

#: Distinct emoji one user may put on one message; adding another answers
#: ``conflict`` with ``details: {limit, per: "user"}``. Removing always works.
MAX_REACTIONS_PER_USER = 5
#: Distinct emoji one message may carry; a new emoji past it answers ``conflict``
#: with ``details: {limit, per: "message"}`` (an emoji already there can still be added).
MAX_EMOJI_PER_MESSAGE = 20
#: Reactions (user, emoji pairs) a message may have and still be sent with its
#: user lists; beyond this a page carries it *summarised*: counts per emoji and
#: the reader's own emoji, without names (docs/protocol.md 6).
MAX_LISTED_REACTIONS = 100

_COMPONENT = emoji_data.STATUS["component"]


def canonical_emoji(text: str) -> str:
    """The stored form of a reaction: ``text`` if it is exactly one emoji.

    Args:
        text: what the client sent as ``emoji``.

    Returns:
        the fully qualified spelling of that emoji (``"❤"`` → ``"❤️"``).

    Raises:
        ValueError: ``text`` is not exactly one emoji; the message says why,
            as the end of a sentence that starts with the field's name.
    """
    entry = emoji_data.EMOJI_DATA.get(text)
    if entry is None or entry["status"] == _COMPONENT:
        if not text:
            raise ValueError("must not be empty")
        if emoji_data.emoji_count(text) > 1:
            raise ValueError("must be one emoji, not several")
        raise ValueError("must be one emoji (for example 👍)")
    qualified = emoji_data.emojize(entry["en"])
    # The fully qualified spelling shares the unqualified one's name; should a
    # future table not map the name back, the accepted spelling is kept.
    return qualified if qualified in emoji_data.EMOJI_DATA else text


def is_emoji(text: str) -> bool:
    """Whether the server accepts ``text`` as the ``emoji`` of ``msg.react``."""
    try:
        canonical_emoji(text)
    except ValueError:
        return False
    return True
