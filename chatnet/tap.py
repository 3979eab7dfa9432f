"""``twistd chatnet``: command-line options and ``makeService``.

``twistd -n --pidfile= chatnet --help`` lists every option. ``makeService``
is synchronous (as twistd wants it): it validates the options and builds the
service; asynchronous start-up happens in ``ChatnetService.startService``.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from chatnet.config import (
    DEFAULT_CONNECTS_PER_ADDRESS,
    DEFAULT_DB_BUSY_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOGIN_TIMEOUT,
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_INVITES,
    DEFAULT_MAX_ROOMS,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
    DEFAULT_PRESENCE_ROOM_LIMIT,
    PRE_LOGIN_MAX_FRAME,
    ConfigError,
    ServerConfig,
)


class Options(usage.Options):
    """Options of ``twistd chatnet``."""

    synopsis = "[options]"
    longdesc = (
        "Runs the chatnet chat server over TLS. With no --tls-cert, the first start "
        "creates a development CA and a server certificate in <data-dir>/tls/ and logs "
        "where the CA file is (clients trust it with --ca, or pin its fingerprint with "
        "--pin); the server certificate lives 365 days and is renewed by itself 30 days "
        "before it expires. Data lives in --data-dir: "
        "the SQLite database chatnet.db unless --database names another."
    )
    optFlags = [
        ["open-registration", None, "let anyone create an account with auth.register"],
        ["single-session", None,
         "a new login ends the user's other sessions (session.ended: replaced)"],
        ["tls-client-cert-login", None,
         "a client certificate's common name must be the username that logs in "
         "(needs --tls-client-ca; the password is still checked). Without it, any "
         "certificate from --tls-client-ca may log in as anyone"],
        ["ldap-only", None,
         "with --ldap-url: every password login goes to the directory (local passwords, "
         "e.g. of accounts made with chatnet-admin, are not accepted)"],
        ["no-jobs", None,
         "run none of the cluster's periodic jobs here (expiry, search indexing, "
         "retention, clean-ups): another node of the cluster does"],
        ["compliance-log", None,
         "keep the content of deleted, edited and expired messages in the audit log, "
         "for admins and auditors (members still see them vanish; docs/security.md)"],
    ]
    optParameters = [
        ["port", "p", "5443", "TCP port to listen on (0 picks a free one)"],
        ["interface", "i", "0.0.0.0", "address to listen on (:: for IPv6 and IPv4)"],
        ["data-dir", "d", "./chatnet-data",
         "directory for the database, TLS material and files (created if missing)"],
        ["database", None, "",
         "database: empty for SQLite in the data dir, sqlite:PATH, or "
         "postgresql://host:port/dbname (needs the 'cluster' extra)"],
        ["tls-cert", None, None,
         "PEM certificate chain of the server (default: generated development CA)"],
        ["tls-key", None, None, "PEM private key of --tls-cert"],
        ["tls-client-ca", None, None,
         "PEM CA file: require client certificates signed by it (mutual TLS; a "
         "network gate only, unless --tls-client-cert-login)"],
        ["max-frame", None, str(DEFAULT_MAX_FRAME),
         "largest frame accepted after login, in bytes; larger ones get too_large and a "
         f"close (before login the limit is {PRE_LOGIN_MAX_FRAME})"],
        ["login-timeout", None, str(DEFAULT_LOGIN_TIMEOUT),
         "seconds a new connection has to finish TLS, session.hello and a login"],
        ["max-unauthenticated-per-address", None, str(DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS),
         "connections from one address that may be not yet logged in at once"],
        ["max-unauthenticated", None, str(DEFAULT_MAX_UNAUTHENTICATED),
         "connections that may be not yet logged in at once, in all"],
        ["connects-per-address", None, str(DEFAULT_CONNECTS_PER_ADDRESS),
         "new connections one address may open per second (twice that at once)"],
        ["registrations-per-hour", None, "60",
         "accounts one address may create per hour with --open-registration"],
        ["max-sessions-per-user", None, "32",
         "live sessions (connections logged in) one user may have at once"],
        ["idle-timeout", None, str(DEFAULT_IDLE_TIMEOUT),
         "seconds a connection may stay silent before the server closes it"],
        ["max-output", None, str(8 * 1024 * 1024),
         "bytes that may queue for one slow reader before it is disconnected"],
        ["rate-limit", None, "50", "requests per second allowed per connection, sustained"],
        ["rate-burst", None, "200", "requests per connection allowed in a burst"],
        ["token-lifetime", None, str(30 * 24 * 3600),
         "seconds a resume token (auth.resume) stays valid"],
        ["node-id", None, None,
         "this node's number 0-1023 for generated ids, unique in a cluster (default: a "
         "free one at random)"],
        ["redis", None, None,
         "redis://[:password@]host[:port][/db]: join a cluster of nodes sharing a PostgreSQL "
         "database; events, presence and sessions travel through this Redis "
         "(docs/deployment.md)"],
        ["cluster", None, "chatnet",
         "the cluster's name in Redis: several clusters may share one Redis"],
        ["node-expiry", None, "15",
         "seconds after which a node that stopped answering counts as gone (its "
         "users offline) on the others"],
        ["workers", None, "1",
         "processes serving the port (needs --redis); the parent binds, supervises and "
         "restarts them"],
        ["listen", None, None,
         "a Twisted endpoint to listen on instead of --port/--interface, e.g. "
         r"tcp:5443:interface=\:\: or systemd:domain=INET:index=0 (socket activation); "
         "TLS is added on top"],
        ["listen-fd", None, None, "accept on this inherited listening socket (a worker)"],
        ["metrics-port", None, None,
         "serve /healthz and Prometheus /metrics over plain HTTP on this port "
         "(default: not at all)"],
        ["metrics-interface", None, "127.0.0.1", "address of the /healthz and /metrics port"],
        ["max-file-size", None, str(100 * 1024 * 1024),
         "largest file a user may upload, in bytes (larger ones get too_large)"],
        ["user-quota", None, None,
         "bytes one user's uploaded files may take in all (default: no limit)"],
        ["upload-expiry", None, str(24 * 3600),
         "seconds an unfinished upload is kept before it is removed"],
        ["durability", None, "process",
         "what an acknowledged message survives: 'process' (a crash of the server "
         "process; SQLite synchronous=NORMAL) or 'power' (also power loss and OS "
         "crashes; synchronous=FULL, slower commits)"],
        ["db-busy-timeout", None, str(DEFAULT_DB_BUSY_TIMEOUT),
         "seconds a transaction waits for a database lock held elsewhere before the "
         "request fails with 'unavailable'"],
        ["max-rooms", None, str(DEFAULT_MAX_ROOMS),
         "rooms one user may be in (group rooms and the direct rooms they opened)"],
        ["max-invites", None, str(DEFAULT_MAX_INVITES),
         "pending room invitations one user may have sent (they expire after 14 days)"],
        ["presence-room-limit", None, str(DEFAULT_PRESENCE_ROOM_LIMIT),
         "rooms with more members than this carry no presence events (bringing a "
         "room of N online costs N*N/2 of them); members still see presence on request"],
        ["retention-days", None, None,
         "delete messages older than this many days, and files no message refers to "
         "any more, once a day (default: keep everything)"],
        ["ldap-url", None, None,
         "log people in against the company directory: ldap://host[:port] or "
         "ldaps://host[:port] (with --ldap-bind-dn, or --ldap-search-base and a service "
         "account); local accounts keep their passwords"],
        ["ldap-bind-dn", None, None,
         "the user's DN with {username}, e.g. uid={username},ou=people,dc=example,dc=com"],
        ["ldap-search-base", None, None, "where to search for the user (search then bind)"],
        ["ldap-search-filter", None, "(uid={username})",
         "the search filter with {username} (Active Directory: (sAMAccountName={username}))"],
        ["ldap-service-dn", None, None, "the service account that searches"],
        ["ldap-service-password-env", None, None,
         "NAME of the environment variable holding the service account's password"],
        ["ldap-admin-group", None, None, "group DN whose members get the admin role"],
        ["ldap-auditor-group", None, None, "group DN whose members get the auditor role"],
        ["ldap-ca", None, None, "PEM CA file to trust for ldaps:// (default: the system's)"],
        ["ldap-timeout", None, "10", "seconds to connect to the directory and for each answer"],
        ["assistant-url", None, None,
         "base URL of an OpenAI-compatible endpoint (POST URL/v1/chat/completions): runs "
         "the assistant, an account that answers direct messages and mentions "
         "(docs/assistant.md); without it there is no assistant"],
        ["assistant-model", None, "", "model name the assistant asks the endpoint for"],
        ["assistant-key-env", None, "",
         "NAME of the environment variable holding the endpoint's API key"],
        ["assistant-name", None, "assistant", "the assistant's username"],
        ["assistant-timeout", None, "60",
         "seconds the endpoint may stay silent before the assistant gives up and apologises"],
    ]

    def postOptions(self) -> None:
        """Validate every value once, into ``self.config``."""
        try:
            self.config = ServerConfig.from_options(self)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None


def makeService(options: Options) -> Any:
    """Build the chatnet service from parsed options (called by twistd).

    Raises:
        SystemExit: the data directory is refused (writable by others, owned by
            another user); the message names the path and the fix.
    """
    from twisted.internet import reactor

    from chatnet.server import ChatnetService
    from chatnet.workers import WorkerSupervisor, die_with_parent

    if options.config.workers > 1:
        return WorkerSupervisor(options.config, options, reactor)
    if options.config.listen_fd is not None:
        die_with_parent()
    try:
        return ChatnetService(options.config, reactor)
    except ConfigError as exc:
        raise SystemExit(f"twistd chatnet: {exc}") from None
