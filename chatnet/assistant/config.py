"""The assistant's settings: validated once into an immutable object.

The same options exist twice: in the server (``--assistant-url`` …, where
``from_options`` is called with ``prefix="assistant-"``) and in the standalone
plugin (``twistd chatnet-assistant --url`` …, no prefix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chatnet.config import ConfigError
from chatnet.wire.ops import USERNAME_RE

#: The account name the assistant uses unless told otherwise (PROTOCOL.md 11).
DEFAULT_NAME = "assistant"
#: Seconds the endpoint may stay silent: before its answer starts, or between
#: two pieces of it.
DEFAULT_TIMEOUT = 60.0
#: What the model is told before the room's messages.
DEFAULT_PROMPT = (
    "You are {name}, an assistant in a company's internal chat. People talk to you "
    "in direct messages or mention you in rooms. Each message from a person starts "
    "with their username and a colon. Answer the last message briefly and helpfully, "
    "in the language it was written in. Plain text; Markdown is shown as typed."
)
#: Names of environment variables: letters, digits and underscores.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class AssistantConfig:
    """What the assistant needs to know.

    Attributes:
        url: the endpoint's base URL (``http://127.0.0.1:8080``, or with ``/v1``);
            requests go to ``{url}/v1/chat/completions`` (:attr:`completions_url`).
        model: the ``model`` field of each request; ``""`` leaves it out (servers
            that serve one model, such as llama.cpp's, do not need it).
        key_env: the NAME of the environment variable that holds the API key,
            ``""`` for none; the key itself is never part of the configuration.
        name: the account's username.
        timeout: seconds the endpoint may stay silent before the answer is given
            up (before the first token, and between two pieces of the stream).
        context_messages: the most messages of a room sent as context (the
            question included).
        context_chars: the most characters of those messages in all.
        questions_burst: questions one person may ask at once.
        questions_per_minute: questions one person may ask per minute, sustained.
        max_concurrent: answers being produced at once; later questions wait.
        edit_interval: least seconds between two edits of one answer.
        prompt: the system message; ``{name}`` is replaced by :attr:`name`.
    """

    url: str
    model: str = ""
    key_env: str = ""
    name: str = DEFAULT_NAME
    timeout: float = DEFAULT_TIMEOUT
    context_messages: int = 20
    context_chars: int = 12_000
    questions_burst: int = 5
    questions_per_minute: float = 6.0
    max_concurrent: int = 4
    edit_interval: float = 0.5
    prompt: str = DEFAULT_PROMPT

    @property
    def completions_url(self) -> str:
        """The URL requests are posted to: ``{url}/v1/chat/completions`` (a base URL
        that already ends in ``/v1`` is not given a second one)."""
        base = self.url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return base + "/chat/completions"

    @property
    def system_prompt(self) -> str:
        """:attr:`prompt` with the assistant's name filled in."""
        return self.prompt.replace("{name}", self.name)

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key, read from the environment variable :attr:`key_env` now.

        Args:
            environ: the environment to read (default: ``os.environ``).

        Returns:
            the key, or None when there is no variable name or it is unset or empty.
        """
        if not self.key_env:
            return None
        value = (os.environ if environ is None else environ).get(self.key_env, "")
        return value.strip() or None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], prefix: str = "") -> AssistantConfig | None:
        """Validate the assistant's options.

        Args:
            options: parsed options with the keys ``{prefix}url``, ``{prefix}model``,
                ``{prefix}key-env``, ``{prefix}name``, ``{prefix}timeout`` (missing
                keys take their defaults).
            prefix: ``"assistant-"`` in the server, ``""`` in the standalone plugin.

        Returns:
            the configuration, or None when no URL is given (no assistant).

        Raises:
            ConfigError: a value is wrong, or an assistant option is given without
                a URL; the message names the option.
        """
        def option(key: str) -> str:
            value = options.get(prefix + key)
            return "" if value is None else str(value).strip()

        url = option("url")
        if not url:
            given = [k for k in ("model", "key-env") if option(k)]
            if given and prefix:
                raise ConfigError(f"--{prefix}{given[0]} needs --{prefix}url (the endpoint)")
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--{prefix}url must be an http:// or https:// URL, not {url!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"--{prefix}url must be a base URL without ?query or #fragment, "
                              f"not {url!r}")
        key_env = option("key-env")
        if key_env and not _ENV_NAME.fullmatch(key_env):
            raise ConfigError(f"--{prefix}key-env must be the NAME of an environment variable "
                              f"(letters, digits, _), not {key_env!r}; the key itself goes "
                              "in that variable, never on the command line")
        name = (option("name") or DEFAULT_NAME).casefold()
        if not USERNAME_RE.fullmatch(name):
            raise ConfigError(f"--{prefix}name must be a username (1-32 characters of "
                              f"a-z 0-9 . _ -), not {name!r}")
        raw_timeout = option("timeout") or str(DEFAULT_TIMEOUT)
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(f"--{prefix}timeout must be a number of seconds, "
                              f"not {raw_timeout!r}") from None
        if not 0.1 <= timeout <= 3600:
            raise ConfigError(f"--{prefix}timeout must be between 0.1 and 3600 seconds, "
                              f"not {timeout:g}")
        return cls(url=url, model=option("model"), key_env=key_env, name=name,
                   timeout=timeout)
