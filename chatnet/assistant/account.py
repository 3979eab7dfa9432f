"""The account of the server's own assistant: made at start, a new password each time.

When the server runs with ``--assistant-url`` it makes sure the assistant's
account exists before the bot logs in: it creates it if missing, or gives it
a new random password, through the store. The password lives only in the
server's memory and is never configured, logged or written anywhere; old
resume tokens are revoked with it. The account carries the role
:data:`BOT_ROLE`, which marks it as the assistant's: an existing account of
that name without the role belongs to a person, and is never taken over.
"""

from __future__ import annotations

import secrets
from typing import Any

from twisted.logger import Logger

from chatnet.config import ConfigError
from chatnet.cred.checkers import PasswordHasher
from chatnet.store import ChatStore

#: The role that marks an account as the assistant's (shown by
#: ``chatnet-admin list-users`` and in the login result's ``roles``).
BOT_ROLE = "bot"
#: What the account is called in clients.
DISPLAY_NAME = "Assistant"

log = Logger(namespace="chatnet.assistant.account")


async def provision_account(store: ChatStore, hasher: PasswordHasher, clock: Any,
                            username: str) -> str:
    """Create the assistant's account, or give it a new password.

    Args:
        store: the server's store.
        hasher: hashes the password (Argon2id, in its threads).
        clock: provides ``seconds()``.
        username: the account's (valid, case-folded) name.

    Returns:
        the new password (random, 256 bits), for the bot's login.

    Raises:
        ConfigError: an account of that name exists and is not the assistant's
            (no :data:`BOT_ROLE`).
        ChatError: ``unavailable`` (storage or hashing queue).
    """
    password = secrets.token_urlsafe(32)
    password_hash = await hasher.hash(password)
    now = int(clock.seconds() * 1000)
    user = await store.user_by_name(username)
    if user is None:
        user_id = store.ids.next_id()
        await store.create_user(user_id, username, DISPLAY_NAME, password_hash, [BOT_ROLE], now)
        await store.audit(store.ids.next_id(), now, "assistant.created", user_id=user_id,
                          username=username)
        log.info("assistant account {username} created", username=username)
        return password
    if BOT_ROLE not in user.roles:
        raise ConfigError(
            f"--assistant-name: the account {username!r} exists and is not the assistant's "
            f"(it has no {BOT_ROLE!r} role), so it is not taken over; choose another "
            "--assistant-name")
    # The new password ends sessions of the old one (another node, an old run)
    # and revokes their tokens.
    await store.set_password_hash(user.user_id, password_hash, revoke_tokens=True,
                                  credentials_ts=now)
    return password
