"""Presence states as the client shows them (PROTOCOL.md 4)."""

from __future__ import annotations

from qtclient.i18n import N_

#: States a user can choose for themselves, in menu order.
OWN_STATES = ("online", "away", "busy", "invisible")
#: States others can be seen in (``invisible`` is shown to others as ``offline``).
SHOWN_STATES = ("online", "away", "busy", "offline")
#: What the client shows for others while it is not connected: it cannot know,
#: so it claims nobody is online (never sent by the server).
UNKNOWN = "unknown"
#: Untranslated names of every state; translate with ``_()`` when shown.
STATE_NAMES = {
    "online": N_("Online"),
    "away": N_("Away"),
    "busy": N_("Busy"),
    "invisible": N_("Invisible"),
    "offline": N_("Offline"),
    UNKNOWN: N_("Unknown (not connected)"),
}
#: Dot colours (RGB hex), chosen to stay distinct for the common colour blindnesses
#: (green / amber / red differ in lightness too).
STATE_COLOURS = {
    "online": "#2e9d4f",
    "away": "#e0a100",
    "busy": "#d0312d",
    "invisible": "#9aa0a6",
    "offline": "#9aa0a6",
    UNKNOWN: "#dadce0",
}


def normalise(state: object) -> str:
    """A state from the wire, or ``offline`` for anything unknown."""
    return state if isinstance(state, str) and state in OWN_STATES + SHOWN_STATES else "offline"
