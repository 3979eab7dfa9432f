"""The server's configuration: validated once into an immutable object.

:func:`chatnet.tap.Options` parses the command line; :meth:`ServerConfig.from_options`
turns it into a :class:`ServerConfig`, reporting every problem with the
option's name in plain language (``ConfigError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatnet.assistant.config import AssistantConfig
    from chatnet.cred.directory import DirectoryConfig

#: PROTOCOL.md 1: the default maximum frame, in bytes.
DEFAULT_MAX_FRAME = 1024 * 1024
#: PROTOCOL.md 3.7: the default idle timeout, in seconds.
DEFAULT_IDLE_TIMEOUT = 90
#: PROTOCOL.md 1: the largest frame accepted before login, in bytes (hello,
#: login, register and resume all fit in far less).
PRE_LOGIN_MAX_FRAME = 8 * 1024
#: PROTOCOL.md 1: seconds a connection has to complete TLS, hello and login.
DEFAULT_LOGIN_TIMEOUT = 10
#: Unauthenticated connections allowed at once from one address, and in all.
DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS = 256
DEFAULT_MAX_UNAUTHENTICATED = 5000
#: New connections one address may open per second (and at once): each costs a
#: TLS handshake, the most expensive thing a peer can ask for without an account.
DEFAULT_CONNECTS_PER_ADDRESS = 50
#: ``--durability`` values: what an acknowledged ``msg.send`` survives.
#: ``process``: a crash of the server process (SQLite ``synchronous=NORMAL`` in
#: WAL mode); ``power``: also a power loss or an OS crash (``synchronous=FULL``).
DURABILITY_LEVELS = ("process", "power")
#: Default seconds a transaction waits for a lock held by another connection
#: before it fails with ``unavailable`` (``--db-busy-timeout``).
DEFAULT_DB_BUSY_TIMEOUT = 5.0
#: docs/protocol.md 5: the default number of rooms one user may be in (group rooms and
#: the direct rooms they opened).
DEFAULT_MAX_ROOMS = 1000
#: docs/protocol.md 5: the default number of pending invitations one user may have sent.
DEFAULT_MAX_INVITES = 1000
#: docs/protocol.md 4: rooms with more members than this carry no presence events
#: (``--presence-room-limit``): bringing a room of N online costs N²/2 of them.
DEFAULT_PRESENCE_ROOM_LIMIT = 1000


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the option."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to know at start.

    Attributes:
        port: TCP port to listen on.
        interface: address to bind (``0.0.0.0`` for all IPv4, ``::`` for all).
        data_dir: the data directory (database, TLS material, files).
        database: ``""`` for SQLite in the data dir, ``sqlite:PATH`` or a
            ``postgresql://`` URL.
        tls_cert: PEM certificate chain, or None to use/generate the development CA.
        tls_key: PEM private key of ``tls_cert``.
        tls_client_ca: PEM CA; when set, clients must present a certificate it signed.
        tls_client_cert_login: the client certificate's subject common name must be
            the username that logs in (needs ``tls_client_ca``); without it the
            client CA only gates the network.
        open_registration: whether ``auth.register`` is allowed.
        max_frame: largest frame accepted or sent, in bytes.
        idle_timeout: seconds without a frame before the server closes a connection.
        single_session: a new login ends the user's other sessions (``replaced``).
        max_output: bytes queued for one connection before it is disconnected.
        rate: sustained requests per second per connection.
        burst: requests per connection allowed in a burst above ``rate``.
        token_lifetime: seconds a resume token stays valid.
        argon2_time_cost: Argon2id iterations for new password hashes.
        argon2_memory_kib: Argon2id memory for new password hashes, in KiB.
        shutdown_grace: seconds to let connections close at shutdown before aborting.
        node_id: this node's number for generated ids (0-1023), None for random.
        max_file_size: largest file accepted, bytes.
        user_quota: bytes one user's files may take, None for unlimited.
        upload_expiry: seconds an unfinished upload is kept before it is removed.
        server_name: the server name sent in ``session.hello``.
        login_timeout: seconds a connection has to finish TLS, ``session.hello``
            and a login before it is closed.
        max_unauthenticated_per_address: connections from one address that
            may be not yet logged in at once; more are closed at once.
        max_unauthenticated: the same, for all addresses together.
        connects_per_address: new connections one address may open per second,
            and twice that at once; more are closed before the TLS handshake.
        registrations_per_hour: accounts one address may create with
            ``auth.register`` per hour (a burst of that many, refilled evenly).
        max_sessions_per_user: live sessions one user may have at once (on one node).
        credentials_poll: seconds between checks for password changes made
            elsewhere (another node, ``chatnet-admin``) whose sessions must end.
        durability: ``process`` or ``power`` (:data:`DURABILITY_LEVELS`).
        db_busy_timeout: seconds a transaction waits for a database lock (SQLite
            ``busy_timeout``, PostgreSQL ``lock_timeout``) before it fails.
        max_rooms: rooms one user may be in (group rooms, direct rooms they opened).
        presence_room_limit: rooms with more members than this carry no
            ``presence`` events (members see presence on request instead).
        max_invites: pending invitations one user may have sent (each expires
            after ``chatnet.services.rooms.INVITE_LIFETIME``).
        assistant: the assistant's settings (PROTOCOL.md 11, docs/assistant.md),
            or None: no assistant, and no account for it is made.
        retention_days: messages older than this are deleted daily (with files no
            message refers to any more); None keeps everything.
        compliance_log: keep the content of deleted, edited and expired messages
            in the audit log (docs/security.md).
        directory: directory (LDAP) login settings, or None (local passwords only).
        redis: the cluster bus as ``(host, port, db)``, or None: one node alone
            (docs/deployment.md).
        redis_password: the password Redis asks for (``requirepass``), or None.
        cluster: the cluster's name in Redis (prefix of its channel and keys).
        node_expiry: seconds a node's keys live in Redis without a refresh: a
            node that died counts as gone (its users offline) this long after.
        listen: a Twisted server endpoint description to listen on instead of
            ``port``/``interface`` (``tcp:5443:interface=::``,
            ``systemd:domain=INET:index=0``); TLS is added on top.
        listen_fd: an inherited listening socket to accept on (a worker of
            ``--workers``), or None.
        workers: processes serving the port (``--workers``; more than 1 needs ``redis``).
        jobs: whether this process runs the cluster's periodic jobs (expiry,
            search indexing, retention, clean-ups); in a cluster, one process may.
        metrics_port: port of the ``/healthz`` and ``/metrics`` HTTP listener, or None.
        metrics_interface: address of that listener.
    """

    port: int = 5443
    interface: str = "0.0.0.0"
    data_dir: Path = Path("chatnet-data")
    database: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tls_client_cert_login: bool = False
    open_registration: bool = False
    max_frame: int = DEFAULT_MAX_FRAME
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    single_session: bool = False
    max_output: int = 8 * 1024 * 1024
    rate: float = 50.0
    burst: float = 200.0
    token_lifetime: int = 30 * 24 * 3600
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    shutdown_grace: float = 5.0
    node_id: int | None = None
    server_name: str = "chatnet"
    max_file_size: int = 100 * 1024 * 1024
    user_quota: int | None = None
    upload_expiry: int = 24 * 3600
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT
    max_unauthenticated_per_address: int = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
    max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED
    connects_per_address: int = DEFAULT_CONNECTS_PER_ADDRESS
    registrations_per_hour: int = 60
    credentials_poll: float = 5.0
    max_sessions_per_user: int = 32
    durability: str = "process"
    db_busy_timeout: float = DEFAULT_DB_BUSY_TIMEOUT
    max_rooms: int = DEFAULT_MAX_ROOMS
    max_invites: int = DEFAULT_MAX_INVITES
    presence_room_limit: int = DEFAULT_PRESENCE_ROOM_LIMIT
    assistant: AssistantConfig | None = None
    retention_days: int | None = None
    compliance_log: bool = False
    directory: DirectoryConfig | None = None
    redis: tuple[str, int, int] | None = None
    redis_password: str | None = None
    cluster: str = "chatnet"
    node_expiry: float = 15.0
    listen: str | None = None
    listen_fd: int | None = None
    workers: int = 1
    jobs: bool = True
    metrics_port: int | None = None
    metrics_interface: str = "127.0.0.1"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ServerConfig:
        """Validate parsed command-line options.

        Args:
            options: a ``chatnet.tap.Options`` (or any mapping with the same keys).

        Returns:
            the configuration.

        Raises:
            ConfigError: a value is out of range, a file is missing, or options
                that go together are given alone; the message names the option.
        """
        def integer(name: str, low: int, high: int) -> int:
            raw = options[name]
            try:
                value = int(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"--{name} must be a whole number, not {raw!r}") from None
            if not low <= value <= high:
                raise ConfigError(f"--{name} must be between {low} and {high}, not {value}")
            return value

        def number(name: str, low: float, high: float) -> float:
            raw = options[name]
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"--{name} must be a number, not {raw!r}") from None
            if not low <= value <= high:
                raise ConfigError(f"--{name} must be between {low} and {high}, not {value}")
            return value

        def existing_file(name: str) -> Path | None:
            raw = options.get(name)
            if not raw:
                return None
            path = Path(raw)
            if not path.is_file():
                raise ConfigError(f"--{name}: no such file: {raw}")
            return path

        tls_cert, tls_key = existing_file("tls-cert"), existing_file("tls-key")
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("--tls-cert and --tls-key must be given together")
        tls_client_ca = existing_file("tls-client-ca")
        if options.get("tls-client-cert-login") and tls_client_ca is None:
            raise ConfigError("--tls-client-cert-login needs --tls-client-ca (the CA whose "
                              "client certificates name the users)")
        database = str(options.get("database") or "")
        if database and not database.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ConfigError("--database must be sqlite:PATH or a postgresql:// URL, "
                              f"not {database!r}")
        durability = str(options.get("durability") or "process")
        if durability not in DURABILITY_LEVELS:
            raise ConfigError(f"--durability must be one of {', '.join(DURABILITY_LEVELS)}, "
                              f"not {durability!r}")
        from chatnet.assistant.config import AssistantConfig

        assistant = AssistantConfig.from_options(options, prefix="assistant-")
        directory = _directory(options, number, existing_file)
        node = options.get("node-id")
        redis = redis_address(str(options.get("redis") or ""))
        workers = integer("workers", 1, 64) if options.get("workers") else 1
        if workers > 1 and redis is None:
            raise ConfigError("--workers needs --redis: the worker processes deliver each "
                              "other's events through it")
        listen = str(options.get("listen") or "") or None
        if listen is not None and workers > 1:
            raise ConfigError("--workers binds --interface/--port itself (one socket per "
                              "worker); --listen cannot be used with it")
        if listen is not None:
            from twisted.internet import endpoints, reactor

            try:
                endpoints.serverFromString(reactor, listen)
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"--listen: not a server endpoint description: "
                                  f"{listen!r} ({exc})") from None
        metrics = options.get("metrics-port")
        quota = options.get("user-quota")
        return cls(
            port=integer("port", 0, 65535),
            interface=str(options["interface"]),
            data_dir=Path(options["data-dir"]),
            database=database,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            tls_client_cert_login=bool(options.get("tls-client-cert-login")),
            open_registration=bool(options.get("open-registration")),
            max_frame=integer("max-frame", 4096, 64 * 1024 * 1024),
            idle_timeout=integer("idle-timeout", 5, 24 * 3600),
            single_session=bool(options.get("single-session")),
            max_output=integer("max-output", 64 * 1024, 1024 * 1024 * 1024),
            rate=number("rate-limit", 0.1, 1_000_000),
            burst=number("rate-burst", 1, 10_000_000),
            token_lifetime=integer("token-lifetime", 60, 10 * 365 * 24 * 3600),
            node_id=None if node in (None, "") else integer("node-id", 0, 1023),
            max_file_size=integer("max-file-size", 0, 2**53),
            user_quota=None if quota in (None, "") else integer("user-quota", 0, 2**53),
            upload_expiry=integer("upload-expiry", 60, 365 * 24 * 3600),
            login_timeout=integer("login-timeout", 1, 3600),
            max_unauthenticated_per_address=integer("max-unauthenticated-per-address", 1,
                                                    1_000_000),
            max_unauthenticated=integer("max-unauthenticated", 1, 10_000_000),
            connects_per_address=integer("connects-per-address", 1, 10_000_000),
            registrations_per_hour=integer("registrations-per-hour", 1, 10_000_000),
            max_sessions_per_user=integer("max-sessions-per-user", 1, 1_000_000),
            durability=durability,
            db_busy_timeout=number("db-busy-timeout", 0.001, 3600),
            max_rooms=integer("max-rooms", 1, 1_000_000),
            max_invites=integer("max-invites", 1, 1_000_000),
            presence_room_limit=integer("presence-room-limit", 2, 10_000_000)
            if options.get("presence-room-limit") else DEFAULT_PRESENCE_ROOM_LIMIT,
            assistant=assistant,
            retention_days=None if options.get("retention-days") in (None, "")
            else integer("retention-days", 1, 100 * 365),
            compliance_log=bool(options.get("compliance-log")),
            directory=directory,
            redis=redis,
            redis_password=redis_password(str(options.get("redis") or "")),
            cluster=cluster_name(str(options.get("cluster") or "chatnet")),
            node_expiry=number("node-expiry", 1, 3600) if options.get("node-expiry")
            else 15.0,
            listen=listen,
            listen_fd=integer("listen-fd", 3, 65535) if options.get("listen-fd") else None,
            workers=workers,
            jobs=not options.get("no-jobs"),
            metrics_port=None if metrics in (None, "") else integer("metrics-port", 0, 65535),
            metrics_interface=str(options.get("metrics-interface") or "127.0.0.1"),
        )


def redis_address(url: str) -> tuple[str, int, int] | None:
    """``redis://[:password@]host[:port][/db]`` as ``(host, port, db)``; None for ``""``.

    Raises:
        ConfigError: not such a URL.
    """
    if not url:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or 6379
        db = int(parts.path.strip("/") or 0)
    except ValueError:
        port = db = -1
    if parts.scheme != "redis" or not parts.hostname or port < 0 or not 0 <= db <= 1023:
        raise ConfigError("--redis must be redis://[:password@]host[:port][/db], not "
                          f"{parts._replace(netloc=parts.hostname or '').geturl()!r}")
    return parts.hostname, port, db


def redis_password(url: str) -> str | None:
    """The password in ``redis://:PASSWORD@host…`` (None without one)."""
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password if url else None
    return unquote(password) if password else None


def cluster_name(name: str) -> str:
    """A cluster name: letters, digits, ``-``, ``_`` and ``.``, 1-64 of them.

    Raises:
        ConfigError: anything else.
    """
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(f"--cluster must be 1-64 letters, digits, '-', '_' or '.', "
                          f"not {name!r}")
    return name


def _directory(options: Mapping[str, Any], number: Any, existing_file: Any
               ) -> DirectoryConfig | None:
    """The ``--ldap-*`` options as a :class:`DirectoryConfig` (None without
    ``--ldap-url``).

    Raises:
        ConfigError: a bad URL, neither or both modes, a template without
            ``{username}``, a search without its service account.
    """
    from chatnet.cred.directory import DirectoryConfig

    url = options.get("ldap-url")
    if not url:
        if options.get("ldap-only"):
            raise ConfigError("--ldap-only needs --ldap-url")
        return None
    url = str(url)
    if not url.startswith(("ldap://", "ldaps://")):
        raise ConfigError(f"--ldap-url must start with ldap:// or ldaps://, not {url!r}")
    bind_dn = options.get("ldap-bind-dn") or None
    base = options.get("ldap-search-base") or None
    if (bind_dn is None) == (base is None):
        raise ConfigError("--ldap-url needs either --ldap-bind-dn (a DN template) or "
                          "--ldap-search-base (search then bind), not both")
    if bind_dn is not None and "{username}" not in bind_dn:
        raise ConfigError("--ldap-bind-dn must contain {username}")
    search_filter = str(options.get("ldap-search-filter") or "(uid={username})")
    if base is not None:
        if "{username}" not in search_filter:
            raise ConfigError("--ldap-search-filter must contain {username}")
        if not options.get("ldap-service-dn") or not options.get("ldap-service-password-env"):
            raise ConfigError("--ldap-search-base needs --ldap-service-dn and "
                              "--ldap-service-password-env")
    return DirectoryConfig(
        url=url, bind_dn=bind_dn, search_base=base, search_filter=search_filter,
        service_dn=options.get("ldap-service-dn") or None,
        service_password_env=options.get("ldap-service-password-env") or None,
        admin_group=options.get("ldap-admin-group") or None,
        auditor_group=options.get("ldap-auditor-group") or None,
        ca=existing_file("ldap-ca"), timeout=number("ldap-timeout", 0.1, 600),
        only=bool(options.get("ldap-only")))
