"""``twistd chatnet-assistant``: the assistant on its own, as a client of a server.

The bot logs in to a running chatnet server with an existing account (made
with ``chatnet-admin create-user``), its password in the environment variable
:data:`PASSWORD_VARIABLE`, and answers with the endpoint given::

    CHATNET_PASSWORD=... twistd -n --pidfile= chatnet-assistant \\
        --host chat.example.com --port 5443 --ca ca.pem --user assistant \\
        --url http://127.0.0.1:8080 --model llama3 --key-env LLM_API_KEY

``twistd -n chatnet-assistant --help`` lists the options.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.python import usage

from chatnet.assistant.config import DEFAULT_NAME, DEFAULT_TIMEOUT, AssistantConfig
from chatnet.config import ConfigError
from chatnet.wire.certs import parse_pin
from chatnet.wire.ops import USERNAME_RE

#: The environment variable that holds the account's password.
PASSWORD_VARIABLE = "CHATNET_PASSWORD"


class Options(usage.Options):
    """Options of ``twistd chatnet-assistant``."""

    synopsis = "--host HOST --url URL [options]"
    longdesc = (
        "Runs the chatnet assistant: a bot that logs in to a chatnet server as --user "
        f"(password in the environment variable {PASSWORD_VARIABLE}) and answers direct "
        "messages and messages that mention it with an OpenAI-compatible "
        "chat-completions endpoint (POST URL/v1/chat/completions, streamed). "
        "See docs/assistant.md."
    )
    optParameters = [
        ["host", None, None, "the chatnet server's host name or address"],
        ["port", None, "5443", "the chatnet server's port"],
        ["ca", None, None, "PEM CA file to trust (the server's <data-dir>/tls/ca.pem for "
                           "its development CA); default: the system's CAs"],
        ["pin", None, None, "SHA-256 fingerprint of the server's certificate or CA (as the "
                            "server logs it); without --ca it is the only trust anchor"],
        ["user", None, DEFAULT_NAME, "the account the assistant logs in as"],
        ["url", None, None, "base URL of the OpenAI-compatible endpoint, e.g. "
                            "http://127.0.0.1:8080 or https://api.example.com/v1"],
        ["model", None, "", "model name sent with each request (empty: none)"],
        ["key-env", None, "", "NAME of the environment variable holding the endpoint's "
                              "API key (sent as Authorization: Bearer)"],
        ["timeout", None, str(DEFAULT_TIMEOUT),
         "seconds the endpoint may stay silent before the answer is given up"],
    ]

    def postOptions(self) -> None:
        """Validate every value once, into ``self.config`` and friends.

        Raises:
            usage.UsageError: a value is missing or wrong (the message names it).
        """
        try:
            if not self["host"]:
                raise ConfigError("--host is required (the chatnet server)")
            if not self["url"]:
                raise ConfigError("--url is required (the OpenAI-compatible endpoint)")
            try:
                self.port = int(self["port"])
            except ValueError:
                raise ConfigError(f"--port must be a whole number, not {self['port']!r}"
                                  ) from None
            if not 1 <= self.port <= 65535:
                raise ConfigError(f"--port must be between 1 and 65535, not {self.port}")
            if self["ca"] and not os.path.isfile(self["ca"]):
                raise ConfigError(f"--ca: no such file: {self['ca']}")
            if self["pin"]:
                try:
                    parse_pin(self["pin"])
                except ValueError as exc:
                    raise ConfigError(f"--{exc}") from None
            user = str(self["user"] or "").strip().casefold()
            if not USERNAME_RE.fullmatch(user):
                raise ConfigError(f"--user must be a username (1-32 characters of "
                                  f"a-z 0-9 . _ -), not {self['user']!r}")
            config = AssistantConfig.from_options({**self, "name": user}, prefix="")
            assert config is not None
            self.config = config
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None


def makeService(options: Options) -> Any:
    """Build the assistant's service (called by twistd).

    Raises:
        SystemExit: the password variable is not set.
    """
    from twisted.internet import reactor

    from chatnet.assistant.service import AssistantService

    password = os.environ.get(PASSWORD_VARIABLE, "")
    if not password:
        raise SystemExit(f"twistd chatnet-assistant: set {PASSWORD_VARIABLE} to the password "
                         f"of {options.config.name!r} (it is never given on the command line)")
    return AssistantService(options.config, reactor, options["host"], options.port, password,
                            ca=options["ca"] or None, pin=options["pin"] or None)
