"""Users, login tokens and contacts: named transactions over ``users``,
``auth_tokens`` and ``contacts`` (PROTOCOL.md sections 3 and 4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chatnet.errors import ChatError, ErrorCode
from chatnet.store.database import Database, IntegrityError, Txn
from chatnet.store.records import USER_COLUMNS, UserRecord, user_from_row


def _like_prefix(query: str) -> str:
    """A LIKE pattern matching values that contain ``query`` literally."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


#: The sections of a contact list, in the order ``contact.list`` pages through them.
CONTACT_SECTIONS = ("contacts", "incoming", "outgoing")


@dataclass(frozen=True, slots=True)
class ContactLimits:
    """Per-user bounds on contacts (docs/protocol.md 4).

    Attributes:
        max_contacts: accepted contacts a user may have.
        max_outgoing: requests a user may have waiting for an answer.
        request_ttl_ms: how long a request waits before it expires, ms.
    """

    max_contacts: int
    max_outgoing: int
    request_ttl_ms: int


@dataclass(frozen=True, slots=True)
class ContactEntry:
    """One line of a contact list: a contact (with ``user``) or a request."""

    section: str
    username: str
    user: UserRecord | None


def lock_users(t: Txn, *user_ids: int) -> None:
    """Take the row locks of these users until the transaction ends, so that
    per-user checks followed by writes (limits, quotas) run one at a time.

    PostgreSQL runs transactions in parallel at READ COMMITTED, where two
    transactions could both count the same rows and both pass a limit; the
    second now waits and then counts what the first wrote. Locks are taken in
    id order, so two transactions locking the same pair cannot deadlock.
    SQLite needs nothing: its single connection runs one transaction at a time.
    """
    if t.engine.name != "postgresql":
        return
    for user_id in sorted(set(user_ids)):
        t.execute("SELECT 1 FROM users WHERE user_id = ? FOR UPDATE", (user_id,))


class UserStore:
    """Data access for users, tokens and contacts. Mixed into :class:`ChatStore`."""

    db: Database

    # -- users -------------------------------------------------------------------------

    async def create_user(self, user_id: int, username: str, display_name: str,
                          password_hash: str, roles: Iterable[str], created_ts: int) -> None:
        """Insert a user.

        Raises:
            ChatError: ``conflict`` if the username is taken.
        """
        def txn(t: Txn) -> None:
            t.execute(
                "INSERT INTO users (user_id, username, display_name, password_hash, roles, "
                "created_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, username, display_name, password_hash, ",".join(roles), created_ts),
            )

        try:
            await self.db.run_interaction("create_user", txn)
        except IntegrityError:
            raise ChatError(ErrorCode.CONFLICT, f"username {username!r} is taken") from None

    async def user_by_name(self, username: str) -> UserRecord | None:
        """The user with this (case-folded) name, or None."""
        def txn(t: Txn) -> UserRecord | None:
            row = t.execute(f"SELECT {USER_COLUMNS} FROM users WHERE username = ?",
                            (username,)).fetchone()
            return user_from_row(row) if row else None

        return await self.db.run_interaction("user_by_name", txn)

    async def user_by_id(self, user_id: int) -> UserRecord | None:
        """The user with this id, or None."""
        def txn(t: Txn) -> UserRecord | None:
            row = t.execute(f"SELECT {USER_COLUMNS} FROM users WHERE user_id = ?",
                            (user_id,)).fetchone()
            return user_from_row(row) if row else None

        return await self.db.run_interaction("user_by_id", txn)

    async def users_by_ids(self, user_ids: Iterable[int]) -> dict[int, UserRecord]:
        """The users with these ids, by id (unknown ids are left out)."""
        ids = list(set(user_ids))

        def txn(t: Txn) -> dict[int, UserRecord]:
            found: dict[int, UserRecord] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in t.execute(f"SELECT {USER_COLUMNS} FROM users WHERE user_id IN "
                                     f"({marks})", chunk).fetchall():
                    user = user_from_row(row)
                    found[user.user_id] = user
            return found

        return await self.db.run_interaction("users_by_ids", txn)

    async def list_users(self) -> list[UserRecord]:
        """Every user, ordered by username."""
        def txn(t: Txn) -> list[UserRecord]:
            return [user_from_row(r) for r in
                    t.execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY username").fetchall()]

        return await self.db.run_interaction("list_users", txn)

    async def search_users(self, query: str, limit: int) -> list[UserRecord]:
        """Users whose username or display name contains ``query`` (case-insensitive).

        Args:
            query: text to look for; empty lists everyone.
            limit: at most this many results.
        """
        pattern = _like_prefix(query.casefold())

        def txn(t: Txn) -> list[UserRecord]:
            rows = t.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE username LIKE ? ESCAPE '\\' "
                "OR LOWER(display_name) LIKE ? ESCAPE '\\' ORDER BY username LIMIT ?",
                (pattern, pattern, limit)).fetchall()
            return [user_from_row(r) for r in rows]

        return await self.db.run_interaction("search_users", txn)

    async def set_password_hash(self, user_id: int, password_hash: str,
                                revoke_tokens: bool, credentials_ts: int | None = None) -> None:
        """Replace a user's password hash (PROTOCOL.md 3.5, 3.8).

        Args:
            revoke_tokens: delete every resume token of the user.
            credentials_ts: when the credentials changed (ms); sessions that
                authenticated before it are ended by every node
                (:meth:`credentials_changed_since`). None for a re-hash of the
                same password, which changes nothing for sessions.
        """
        def txn(t: Txn) -> None:
            t.execute("UPDATE users SET password_hash = ? WHERE user_id = ?",
                      (password_hash, user_id))
            if credentials_ts is not None:
                t.execute("UPDATE users SET credentials_ts = ? WHERE user_id = ?",
                          (credentials_ts, user_id))
            if revoke_tokens:
                t.execute("DELETE FROM auth_tokens WHERE user_id = ?", (user_id,))

        await self.db.run_interaction("set_password_hash", txn)

    async def credentials_changed_since(self, ts: int) -> list[tuple[int, int]]:
        """Users whose credentials changed after ``ts`` (ms).

        Returns:
            ``[(user_id, credentials_ts)]``, oldest change first.
        """
        def txn(t: Txn) -> list[tuple[int, int]]:
            return [(int(r[0]), int(r[1])) for r in t.execute(
                "SELECT user_id, credentials_ts FROM users WHERE credentials_ts > ? "
                "ORDER BY credentials_ts", (ts,)).fetchall()]

        return await self.db.run_interaction("credentials_changed_since", txn)

    async def credentials_ts(self, user_id: int) -> int:
        """When the user's credentials last changed (ms; 0 if never)."""
        def txn(t: Txn) -> int:
            return int(t.scalar("SELECT credentials_ts FROM users WHERE user_id = ?",
                                (user_id,)) or 0)

        return await self.db.run_interaction("credentials_ts", txn)

    async def users_page(self, query: str, after: str, limit: int) -> list[UserRecord]:
        """Users whose username or display name contains ``query`` (empty: all),
        by username, after ``after``, at most ``limit`` (``admin.users``)."""
        pattern = _like_prefix(query.casefold())

        def txn(t: Txn) -> list[UserRecord]:
            rows = t.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE (username LIKE ? ESCAPE '\\' OR "
                "LOWER(display_name) LIKE ? ESCAPE '\\') AND username > ? ORDER BY username "
                "LIMIT ?", (pattern, pattern, after, limit)).fetchall()
            return [user_from_row(r) for r in rows]

        return await self.db.run_interaction("users_page", txn)

    async def set_ban(self, user_id: int, banned: bool, reason: str | None, until: int | None,
                      ts: int) -> None:
        """Ban (until ``until`` ms, or for good) or unban a user. A ban revokes the
        user's resume tokens and stamps a credentials change, so that every
        node ends their sessions (:class:`~chatnet.services.accounts.CredentialWatch`)."""
        def txn(t: Txn) -> None:
            if banned:
                t.execute("UPDATE users SET banned = 1, ban_reason = ?, banned_until = ?, "
                          "credentials_ts = ? WHERE user_id = ?", (reason, until, ts, user_id))
                t.execute("DELETE FROM auth_tokens WHERE user_id = ?", (user_id,))
            else:
                t.execute("UPDATE users SET banned = 0, ban_reason = NULL, banned_until = NULL "
                          "WHERE user_id = ?", (user_id,))

        await self.db.run_interaction("set_ban", txn)

    async def ban_until(self, user_id: int) -> int | None:
        """When a user's ban ends (ms), or None for a ban without an end."""
        def txn(t: Txn) -> int | None:
            value = t.scalar("SELECT banned_until FROM users WHERE user_id = ?", (user_id,))
            return int(value) if value is not None else None

        return await self.db.run_interaction("ban_until", txn)

    async def set_roles(self, user_id: int, roles: Iterable[str]) -> None:
        """Replace a user's server roles."""
        def txn(t: Txn) -> None:
            t.execute("UPDATE users SET roles = ? WHERE user_id = ?",
                      (",".join(sorted(set(roles))), user_id))

        await self.db.run_interaction("set_roles", txn)

    async def update_profile(self, user_id: int, changes: dict[str, Any]) -> UserRecord:
        """Change ``display_name`` and/or ``status_text`` (the profile picture changes
        only through :meth:`~chatnet.store.files.FileStore.set_avatar`, which checks it).

        Args:
            changes: column name to new value; only those two keys are used.

        Returns:
            the updated user.
        """
        allowed = [k for k in ("display_name", "status_text") if k in changes]

        def txn(t: Txn) -> UserRecord:
            if allowed:
                sets = ", ".join(f"{k} = ?" for k in allowed)
                t.execute(f"UPDATE users SET {sets} WHERE user_id = ?",
                          [changes[k] for k in allowed] + [user_id])
            row = t.execute(f"SELECT {USER_COLUMNS} FROM users WHERE user_id = ?",
                            (user_id,)).fetchone()
            assert row is not None
            return user_from_row(row)

        return await self.db.run_interaction("update_profile", txn)

    async def set_last_seen(self, user_id: int, ts: int) -> None:
        """Record when a user's last session ended (ms since epoch). Grouped with
        the other writes of the moment: when thousands of connections drop at
        once (a network cut, a load balancer restart) they commit together."""
        def txn(t: Txn) -> None:
            t.execute("UPDATE users SET last_seen = ? WHERE user_id = ?", (ts, user_id))

        await self.db.run_grouped("set_last_seen", (("users", user_id),), txn)

    # -- tokens ------------------------------------------------------------------------

    async def add_token(self, token_hash: str, user_id: int, created_ts: int,
                        expires_ts: int) -> None:
        """Store a login token's hash (the token itself is never stored)."""
        def txn(t: Txn) -> None:
            t.execute("INSERT INTO auth_tokens (token_hash, user_id, created_ts, expires_ts) "
                      "VALUES (?, ?, ?, ?)", (token_hash, user_id, created_ts, expires_ts))

        await self.db.run_interaction("add_token", txn)

    async def token_user(self, token_hash: str, now: int) -> int | None:
        """The user id of an unexpired token, or None (expired ones are deleted)."""
        def txn(t: Txn) -> int | None:
            row = t.execute("SELECT user_id, expires_ts FROM auth_tokens WHERE token_hash = ?",
                            (token_hash,)).fetchone()
            if row is None:
                return None
            if row[1] <= now:
                t.execute("DELETE FROM auth_tokens WHERE token_hash = ?", (token_hash,))
                return None
            return int(row[0])

        return await self.db.run_interaction("token_user", txn)

    async def revoke_token(self, token_hash: str) -> None:
        """Delete one token (logout)."""
        def txn(t: Txn) -> None:
            t.execute("DELETE FROM auth_tokens WHERE token_hash = ?", (token_hash,))

        await self.db.run_interaction("revoke_token", txn)

    async def sweep_tokens(self, now: int, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired tokens.

        Returns:
            how many were deleted.
        """
        def txn(t: Txn) -> int:
            t.execute("DELETE FROM auth_tokens WHERE token_hash IN (SELECT token_hash FROM "
                      "auth_tokens WHERE expires_ts <= ? LIMIT ?)", (now, batch))
            return max(0, t.rowcount)

        return await self.db.run_interaction("sweep_tokens", txn)

    # -- contacts ------------------------------------------------------------------------

    async def contact_request(self, user_id: int, contact_id: int, message: str | None,
                              ts: int, limits: ContactLimits) -> str:
        """Ask ``contact_id`` to become a contact of ``user_id``.

        Args:
            ts: now, ms; pending requests older than ``limits.request_ttl_ms`` are
                gone (the requester's own expired ones are deleted here).
            limits: the per-user bounds.

        Returns:
            ``"pending"`` if a new request now waits, ``"repeated"`` if the same
            request was waiting already, ``"accepted"`` if the other side had
            already asked (both become contacts at once), or ``"already"`` if they
            are contacts already.

        Raises:
            ChatError: ``conflict`` with ``details.limit`` when the requester has
                ``limits.max_outgoing`` requests waiting, or either side has
                ``limits.max_contacts`` contacts.
        """
        def txn(t: Txn) -> str:
            lock_users(t, user_id, contact_id)
            since = ts - limits.request_ttl_ms
            t.execute("DELETE FROM contacts WHERE user_id = ? AND state = 'pending' AND ts < ?",
                      (user_id, since))
            mine = t.scalar("SELECT state FROM contacts WHERE user_id = ? AND contact_id = ?",
                            (user_id, contact_id))
            if mine == "accepted":
                return "already"
            theirs = t.execute("SELECT state, ts FROM contacts WHERE user_id = ? AND "
                               "contact_id = ?", (contact_id, user_id)).fetchone()
            if theirs is not None and theirs[0] == "pending" and int(theirs[1]) >= since:
                _accept(t, contact_id, user_id, ts, limits.max_contacts)
                return "accepted"
            if mine == "pending":
                return "repeated"
            _check_contacts(t, user_id, limits.max_contacts, acting=user_id)
            waiting = int(t.scalar("SELECT COUNT(*) FROM contacts WHERE user_id = ? AND "
                                   "state = 'pending'", (user_id,)))
            if waiting >= limits.max_outgoing:
                raise ChatError(ErrorCode.CONFLICT, f"you already have {limits.max_outgoing} "
                                "contact requests waiting for an answer; withdraw one "
                                "(contact.remove) or wait for answers",
                                {"limit": limits.max_outgoing})
            t.execute("INSERT INTO contacts (user_id, contact_id, state, message, ts) "
                      "VALUES (?, ?, 'pending', ?, ?)", (user_id, contact_id, message, ts))
            return "pending"

        return await self.db.run_interaction("contact_request", txn)

    async def contact_respond(self, user_id: int, requester_id: int, accept: bool,
                              ts: int, limits: ContactLimits) -> bool:
        """Accept or decline a pending request from ``requester_id`` to ``user_id``.

        Returns:
            whether there was such a request (an expired one is not).

        Raises:
            ChatError: ``conflict`` with ``details.limit`` when accepting would
                take either side over ``limits.max_contacts`` (the request stays).
        """
        def txn(t: Txn) -> bool:
            lock_users(t, user_id, requester_id)
            row = t.execute("SELECT state, ts FROM contacts WHERE user_id = ? AND "
                            "contact_id = ?", (requester_id, user_id)).fetchone()
            if row is None or row[0] != "pending" or int(row[1]) < ts - limits.request_ttl_ms:
                return False
            if accept:
                _accept(t, requester_id, user_id, ts, limits.max_contacts)
            else:
                t.execute("DELETE FROM contacts WHERE user_id = ? AND contact_id = ?",
                          (requester_id, user_id))
            return True

        return await self.db.run_interaction("contact_respond", txn)

    async def contact_remove(self, user_id: int, contact_id: int) -> bool:
        """Remove a contact (both directions) or withdraw a request.

        Returns:
            whether anything was removed.
        """
        def txn(t: Txn) -> bool:
            t.execute("DELETE FROM contacts WHERE (user_id = ? AND contact_id = ?) "
                      "OR (user_id = ? AND contact_id = ?)",
                      (user_id, contact_id, contact_id, user_id))
            return t.rowcount > 0

        return await self.db.run_interaction("contact_remove", txn)

    async def contact_entries(self, user_id: int, after: tuple[str, str] | None, limit: int,
                              requests_since: int) -> list[ContactEntry]:
        """One stretch of a user's contact list, in its order: accepted contacts,
        then incoming requests, then outgoing requests, each by username.

        Args:
            after: ``(section, username)`` of the last entry already seen, or None
                to start from the beginning.
            limit: at most this many entries.
            requests_since: requests made before this time (ms) have expired and
                are left out.

        Returns:
            the entries; ``user`` is set for contacts, None for requests.
        """
        start = CONTACT_SECTIONS.index(after[0]) if after else 0
        cols = ", ".join("u." + c.strip() for c in USER_COLUMNS.split(","))
        queries = {
            "contacts": (f"SELECT {cols} FROM contacts c JOIN users u ON u.user_id = "
                         "c.contact_id WHERE c.user_id = ? AND c.state = 'accepted' AND "
                         "u.username > ? ORDER BY u.username LIMIT ?", False),
            "incoming": ("SELECT u.username FROM contacts c JOIN users u ON u.user_id = "
                         "c.user_id WHERE c.contact_id = ? AND c.state = 'pending' AND "
                         "c.ts >= ? AND u.username > ? ORDER BY u.username LIMIT ?", True),
            "outgoing": ("SELECT u.username FROM contacts c JOIN users u ON u.user_id = "
                         "c.contact_id WHERE c.user_id = ? AND c.state = 'pending' AND "
                         "c.ts >= ? AND u.username > ? ORDER BY u.username LIMIT ?", True),
        }

        def txn(t: Txn) -> list[ContactEntry]:
            entries: list[ContactEntry] = []
            for index in range(start, len(CONTACT_SECTIONS)):
                section = CONTACT_SECTIONS[index]
                if len(entries) >= limit:
                    break
                floor = after[1] if after and index == start else ""
                sql, is_request = queries[section]
                args: tuple[Any, ...] = (
                    (user_id, requests_since, floor, limit - len(entries)) if is_request
                    else (user_id, floor, limit - len(entries)))
                for row in t.execute(sql, args).fetchall():
                    if is_request:
                        entries.append(ContactEntry(section, row[0], None))
                    else:
                        user = user_from_row(row)
                        entries.append(ContactEntry(section, user.username, user))
            return entries

        return await self.db.run_interaction("contact_entries", txn)

    async def contact_ids(self, user_id: int) -> set[int]:
        """Ids of a user's accepted contacts (at most ``max_contacts``)."""
        def txn(t: Txn) -> set[int]:
            return {int(r[0]) for r in t.execute(
                "SELECT contact_id FROM contacts WHERE user_id = ? AND state = 'accepted'",
                (user_id,)).fetchall()}

        return await self.db.run_interaction("contact_ids", txn)

    async def block(self, user_id: int, other_id: int, on: bool, ts: int,
                    max_blocked: int) -> tuple[bool, bool]:
        """Block (``on``) or unblock ``other_id`` for ``user_id``. Blocking also ends
        a contact between them and withdraws requests either way.

        Returns:
            ``(changed, were_contacts)``.

        Raises:
            ChatError: ``conflict`` with ``details.limit`` past ``max_blocked``.
        """
        def txn(t: Txn) -> tuple[bool, bool]:
            exists = t.scalar("SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?",
                              (user_id, other_id)) is not None
            if not on:
                if exists:
                    t.execute("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?",
                              (user_id, other_id))
                return exists, False
            if exists:
                return False, False
            count = int(t.scalar("SELECT COUNT(*) FROM blocks WHERE user_id = ?", (user_id,)))
            if count >= max_blocked:
                raise ChatError(ErrorCode.CONFLICT, f"you have blocked {max_blocked} people, "
                                "the most one may block", {"limit": max_blocked})
            t.execute("INSERT INTO blocks (user_id, blocked_id, ts) VALUES (?, ?, ?)",
                      (user_id, other_id, ts))
            were = t.scalar("SELECT 1 FROM contacts WHERE user_id = ? AND contact_id = ? AND "
                            "state = 'accepted'", (user_id, other_id)) is not None
            t.execute("DELETE FROM contacts WHERE (user_id = ? AND contact_id = ?) OR "
                      "(user_id = ? AND contact_id = ?)", (user_id, other_id, other_id, user_id))
            return True, were

        return await self.db.run_interaction("block", txn)

    async def blocked_page(self, user_id: int, after: str, limit: int) -> list[str]:
        """Usernames ``user_id`` blocked, by name, after ``after``, at most ``limit``."""
        def txn(t: Txn) -> list[str]:
            return [str(r[0]) for r in t.execute(
                "SELECT u.username FROM blocks b JOIN users u ON u.user_id = b.blocked_id "
                "WHERE b.user_id = ? AND u.username > ? ORDER BY u.username LIMIT ?",
                (user_id, after, limit)).fetchall()]

        return await self.db.run_interaction("blocked_page", txn)

    async def all_blocks(self) -> list[tuple[int, int]]:
        """Every ``(blocker_id, blocked_id)``, for the fan-out at start."""
        def txn(t: Txn) -> list[tuple[int, int]]:
            return [(int(r[0]), int(r[1])) for r in t.execute(
                "SELECT user_id, blocked_id FROM blocks").fetchall()]

        return await self.db.run_interaction("all_blocks", txn)


def _check_contacts(t: Txn, user_id: int, max_contacts: int, acting: int) -> None:
    """Raise ``conflict`` if ``user_id`` already has ``max_contacts`` contacts."""
    count = int(t.scalar("SELECT COUNT(*) FROM contacts WHERE user_id = ? AND "
                         "state = 'accepted'", (user_id,)))
    if count < max_contacts:
        return
    if user_id == acting:
        message = (f"you already have {max_contacts} contacts; remove one "
                   "(contact.remove) first")
    else:
        message = f"the other user already has the most contacts allowed ({max_contacts})"
    raise ChatError(ErrorCode.CONFLICT, message, {"limit": max_contacts})


def _accept(t: Txn, requester_id: int, user_id: int, ts: int, max_contacts: int) -> None:
    """``user_id`` accepts ``requester_id``'s request: contacts both ways."""
    _check_contacts(t, user_id, max_contacts, acting=user_id)
    _check_contacts(t, requester_id, max_contacts, acting=user_id)
    t.execute("UPDATE contacts SET state = 'accepted', ts = ? WHERE user_id = ? "
              "AND contact_id = ?", (ts, requester_id, user_id))
    t.execute("DELETE FROM contacts WHERE user_id = ? AND contact_id = ?", (user_id, requester_id))
    t.execute("INSERT INTO contacts (user_id, contact_id, state, ts) VALUES (?, ?, 'accepted', ?)",
              (user_id, requester_id, ts))
