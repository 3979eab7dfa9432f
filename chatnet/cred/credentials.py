"""Credentials chatnet adds to twisted.cred (PROTOCOL.md 3.4, 3.5).

Both kinds carry the peer address they came from, so that the checkers can
throttle failed attempts per address as well as per account.
"""

from __future__ import annotations

from twisted.cred.credentials import ICredentials, IUsernamePassword, UsernamePassword
from zope.interface import Attribute, implementer


class IToken(ICredentials):
    """A resume token handed out by ``auth.login``."""

    token = Attribute("str: the token as the client sent it")


class IFromPeer(ICredentials):
    """Credentials that know where they came from."""

    peer_host = Attribute("str: the peer's address (host only, no port); '' if unknown")


@implementer(IToken, IFromPeer)
class Token:
    """Resume-token credentials.

    Args:
        token: the token from ``auth.resume {token}``.
        peer_host: the address of the connection that sent it.
    """

    def __init__(self, token: str, peer_host: str = "") -> None:
        self.token = token
        self.peer_host = peer_host


@implementer(IUsernamePassword, IFromPeer)
class PeerUsernamePassword(UsernamePassword):
    """A username and password from ``auth.login``, with the peer's address.

    Args:
        username: as the client sent it (UTF-8 bytes).
        password: as the client sent it (UTF-8 bytes).
        peer_host: the address of the connection that sent them.
    """

    def __init__(self, username: bytes, password: bytes, peer_host: str = "") -> None:
        super().__init__(username, password)
        self.peer_host = peer_host
