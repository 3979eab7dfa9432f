"""Credentials chatnet adds to twisted.cred: the resume token (PROTOCOL.md 3.5)."""

from __future__ import annotations

from twisted.cred.credentials import ICredentials
from zope.interface import Attribute, implementer


class IToken(ICredentials):
    """A resume token handed out by ``auth.login``."""

    token = Attribute("str: the token as the client sent it")


@implementer(IToken)
class Token:
    """Resume-token credentials.

    Args:
        token: the token from ``auth.resume {token}``.
    """

    def __init__(self, token: str) -> None:
        self.token = token
