"""The assistant as a Twisted service: a session, the endpoint, the bot.

:class:`AssistantService` is what both ways of running the assistant start:
the server starts one when it has ``--assistant-url`` (connecting to itself
over loopback, see :func:`loopback_target`), and ``twistd chatnet-assistant``
starts one on its own (:mod:`chatnet.assistant.tap`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.application import service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from chatnet import __version__
from chatnet.assistant.account import provision_account
from chatnet.assistant.bot import Assistant
from chatnet.assistant.completions import ChatCompletions
from chatnet.assistant.config import AssistantConfig
from chatnet.assistant.reply import MAX_ANSWER
from chatnet.client.core import ConnectionClosed
from chatnet.client.session import ChatSession
from chatnet.config import ConfigError
from chatnet.cred.checkers import PasswordHasher
from chatnet.errors import ChatError, ErrorCode
from chatnet.store import ChatStore
from chatnet.wire.certs import fingerprint_text

#: Sent in ``session.hello``.
CLIENT_NAME = f"chatnet-assistant/{__version__}"
#: Errors after which logging in again cannot help.
_FINAL = frozenset({ErrorCode.UNAUTHENTICATED, ErrorCode.BANNED, ErrorCode.FORBIDDEN,
                    ErrorCode.PROTOCOL_VERSION, ErrorCode.BAD_REQUEST})
#: Longest wait between two attempts to reach the server, seconds.
_RETRY_CEILING = 60.0


@dataclass(frozen=True)
class LoopbackTarget:
    """How the server's own assistant reaches it.

    Attributes:
        host: the address to connect to.
        server_name: the name (or address) its certificate is checked for.
        pin: SHA-256 fingerprint of the top certificate of the chain the server
            sends (its CA for the development CA), the only trust anchor.
    """

    host: str
    server_name: str
    pin: str


def loopback_target(interface: str, cert_path: Path) -> LoopbackTarget:
    """Where and how to connect to this server from inside it.

    The address is the listening interface, or the loopback address for a
    wildcard one. The certificate is checked for a loopback name it holds
    (the development certificate names ``127.0.0.1``, ``::1`` and
    ``localhost``), else for its first DNS name (an operator's certificate for
    ``chat.example.com``), and trusted by pinning the top of the chain the server
    sends: the development CA (which survives the server certificate's
    renewal), or the operator's certificate or last intermediate. So no CA file
    is needed, and the system's CAs play no part.

    Args:
        interface: ``--interface`` (``0.0.0.0``, ``::``, or an address).
        cert_path: the PEM chain the server sends (leaf first).

    Raises:
        ValueError: the file holds no certificate.
    """
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    leaf, top = chain[0], chain[-1]
    wildcard = interface in ("", "0.0.0.0", "::")
    host = ("::1" if interface == "::" else "127.0.0.1") if wildcard else interface
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses = [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
        names = list(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        addresses, names = [], []
    if host in addresses:
        server_name = host
    elif wildcard and "localhost" in names:
        server_name = "localhost"
    else:
        loopback = [a for a in addresses if ipaddress.ip_address(a).is_loopback]
        server_name = (loopback[0] if wildcard and loopback else
                       next(iter(names), next(iter(addresses), host)))
    if server_name in addresses and ipaddress.ip_address(server_name).is_loopback and wildcard:
        host = server_name
    return LoopbackTarget(host, server_name, fingerprint_text(top.fingerprint(hashes.SHA256())))


class AssistantService(service.Service):
    """Logs the assistant in and keeps it answering (PROTOCOL.md 11).

    Args:
        config: the assistant's settings.
        reactor: the reactor.
        host: the server's address.
        port: its port.
        password: the account's password.
        ca: PEM CA file to trust, or None.
        pin: SHA-256 fingerprint to pin, or None.
        server_name: the name the certificate must have when it is not ``host``.
        api_key: the endpoint's key; None reads it from ``config.key_env`` at start.

    Attributes:
        session: the assistant's :class:`ChatSession` (made at start).
        assistant: the :class:`Assistant` (made at start).
    """

    log = Logger()

    def __init__(self, config: AssistantConfig, reactor: Any, host: str, port: int,
                 password: str, *, ca: str | Path | None = None, pin: str | None = None,
                 server_name: str | None = None, api_key: str | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.host = host
        self.port = port
        self.ca = ca
        self.pin = pin
        self.server_name = server_name
        self.api_key = api_key
        self._password = password
        self.session: ChatSession | None = None
        self.assistant: Assistant | None = None
        self.completions: ChatCompletions | None = None
        self._run: Deferred[None] | None = None
        self._ready_waiters: list[Deferred[Assistant]] = []

    def when_ready(self) -> Deferred[Assistant]:
        """A Deferred firing with the :class:`Assistant` once it is logged in and
        listening (at once if it is), or failing with the reason it gave up
        (:class:`~chatnet.errors.ChatError`: wrong password, banned …)."""
        d: Deferred[Assistant] = Deferred()
        if self.assistant is not None and self.session is not None and self.session.connected:
            d.callback(self.assistant)
        else:
            self._ready_waiters.append(d)
        return d

    def _tell_ready(self, result: Any) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            if isinstance(result, BaseException):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def startService(self) -> None:
        """Log in (trying again while the server cannot be reached), then answer."""
        super().startService()
        api_key = self.api_key if self.api_key is not None else self.config.api_key()
        if self.config.key_env and api_key is None:
            self.log.warn("the environment variable {var} (--assistant-key-env) is not set: "
                          "requests go to the endpoint without an API key",
                          var=self.config.key_env)
        self.completions = ChatCompletions(self.reactor, self.config.completions_url,
                                           model=self.config.model, api_key=api_key,
                                           timeout=self.config.timeout, max_chars=MAX_ANSWER)
        self.session = ChatSession(self.reactor, self.host, self.port, self.config.name,
                                   self._password, ca=self.ca, pin=self.pin,
                                   server_name=self.server_name, client_name=CLIENT_NAME)
        self.assistant = Assistant(self.session, self.completions, self.config, self.reactor)
        self.assistant.start()
        self._run = Deferred.fromCoroutine(self._log_in())

    async def _log_in(self) -> None:
        assert self.session is not None and self.assistant is not None
        delay = 1.0
        while True:
            try:
                await self.session.start()
                break
            except CancelledError:
                raise
            except ChatError as exc:
                if exc.code in _FINAL and not isinstance(exc, ConnectionClosed):
                    self.log.error("the assistant {name} cannot log in to {host}:{port}: "
                                   "{error}", name=self.config.name, host=self.host,
                                   port=self.port, error=str(exc))
                    self._tell_ready(exc)
                    return
                why = str(exc)
            except Exception as exc:
                why = str(exc) or exc.__class__.__name__
            self.log.warn("the assistant cannot reach {host}:{port} ({why}); trying again "
                          "in {delay:g} s", host=self.host, port=self.port, why=why,
                          delay=delay)
            await deferLater(self.reactor, delay, lambda: None)
            delay = min(_RETRY_CEILING, delay * 2)
        self.log.info("assistant {name} logged in to {host}:{port}; endpoint {url}"
                      "{model}", name=self.config.name, host=self.host, port=self.port,
                      url=self.config.completions_url,
                      model=f" (model {self.config.model})" if self.config.model else "")
        self._tell_ready(self.assistant)

    def stopService(self) -> Deferred[None]:
        """Stop answering, close the session and the endpoint's connections."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        super().stopService()
        if self._run is not None and not self._run.called:
            self._run.cancel()
            self._run.addErrback(lambda f: f.trap(CancelledError))
        if self.assistant is not None:
            await self.assistant.stop()
        if self.session is not None:
            await self.session.close()
        if self.completions is not None:
            await self.completions.close()
        self._tell_ready(ConnectionClosed("the assistant stopped"))


async def start_inside_server(config: AssistantConfig, reactor: Any, store: ChatStore,
                             hasher: PasswordHasher, interface: str, port: int,
                             cert_path: Path) -> AssistantService | None:
    """Start the server's own assistant (``twistd chatnet --assistant-url``): make
    or re-key its account (:func:`~chatnet.assistant.account.provision_account`),
    then log it in over loopback (:func:`loopback_target`).

    Args:
        config: the assistant's settings.
        reactor: the reactor.
        store: the server's store.
        hasher: the server's password hasher.
        interface: the server's ``--interface``.
        port: the port it listens on.
        cert_path: the PEM chain it sends.

    Returns:
        the started service, or None when the account name belongs to a person:
        that is logged as an error and the server runs without its assistant.

    Raises:
        ChatError: ``unavailable`` (storage).
    """
    try:
        password = await provision_account(store, hasher, reactor, config.name)
    except ConfigError as exc:
        AssistantService.log.error("no assistant: {error}", error=str(exc))
        return None
    target = loopback_target(interface, cert_path)
    assistant = AssistantService(config, reactor, target.host, port, password,
                                 pin=target.pin, server_name=target.server_name)
    assistant.startService()
    return assistant
