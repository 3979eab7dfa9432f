"""chatnet: a self-hosted, TLS-secured chat system for a company network.

Packages:
    chatnet.wire      frames, op registry, the server protocol (the *mind*), TLS
    chatnet.cred      twisted.cred checkers and the realm that makes avatars
    chatnet.services  perspectives: the only objects the wire may call
    chatnet.fanout    delivery of events to sessions (encode once, write many)
    chatnet.store     the database layer (SQLite, PostgreSQL) and its schema
    chatnet.client    the client library (sans-I/O core + Twisted transport)
    chatnet.cli       the terminal client and ``chatnet-admin``
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
