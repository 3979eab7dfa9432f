"""Administration (PROTOCOL.md 9, first part): roles op by op, accounts, bans,
sessions, roles and the audit log, over the wire against a real server."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from chatnet.client.connection import ChatConnection
from chatnet.errors import ErrorCode
from tests.support.chat import expect_error
from tests.support.events import EventLog, wait_lost
from tests.support.server import PASSWORD

#: Each admin op with arguments that would be valid for an admin.
ADMIN_OPS: dict[str, dict[str, Any]] = {
    "admin.users": {},
    "admin.sessions": {},
    "admin.audit": {},
    "admin.create_user": {"username": "dora", "password": "a long password 1"},
    "admin.reset_password": {"username": "bob", "password": "a long password 2"},
    "admin.set_role": {"username": "bob", "roles": ["auditor"]},
    "admin.ban": {"username": "bob"},
    "admin.unban": {"username": "bob"},
    "admin.broadcast": {"body": "maintenance at 18:00"},
    "admin.rooms": {},
    "admin.ban_room": {"room_id": 1},
    "admin.unban_room": {"room_id": 1},
    "admin.export": {"since": 0, "until": 2**50},
    "admin.monitor": {"on": False},
}
READ_ONLY = {"admin.users", "admin.sessions", "admin.audit", "admin.monitor", "admin.rooms",
             "admin.export"}


async def with_roles(server: Any, name: str, roles: list[str]) -> ChatConnection:
    """A fresh login of ``name`` after giving them ``roles`` in the store."""
    conn = await server.user(name)
    user = await server.service.store.user_by_name(name)
    await server.service.store.set_roles(user.user_id, roles)
    await conn.close()
    return await server.user(name, register=False)


@pytest.mark.parametrize("op", sorted(ADMIN_OPS))
@pytest_twisted.ensureDeferred
async def test_admin_ops_are_forbidden_to_others_and_auditors_only_read(server, op):
    """A user without a server role gets forbidden for every admin op; an auditor
    for every op but the read-only ones, which answer."""
    carol = await server.user("carol")
    await server.user("bob")
    await expect_error(carol.request(op, ADMIN_OPS[op]), ErrorCode.FORBIDDEN)
    auditor = await with_roles(server, "audrey", ["auditor"])
    if op in READ_ONLY:
        assert isinstance(await auditor.request(op, ADMIN_OPS[op]), dict)
    else:
        await expect_error(auditor.request(op, ADMIN_OPS[op]), ErrorCode.FORBIDDEN)


@pytest_twisted.ensureDeferred
async def test_a_ban_ends_sessions_refuses_login_and_resume_until_unbanned(server):
    """admin.ban ends the user's live sessions (session.ended {banned}), revokes
    their tokens and refuses login; admin.unban lets them in again; a ban whose
    until has passed lets them in by itself. Bans are in the audit log."""
    admin = await with_roles(server, "root", ["admin"])
    bob = await server.user("bob")
    token = bob.login_result["token"]
    events = EventLog(bob, "bob")
    await admin.request("admin.ban", {"username": "bob", "reason": "spam"})
    assert (await events.next("session.ended")).data == {"reason": "banned"}
    await wait_lost(bob)
    other = await server.connect()
    await expect_error(other.login("bob", PASSWORD), ErrorCode.BANNED)
    resumed = await server.connect()
    error = await expect_error(resumed.resume(token), ErrorCode.UNAUTHENTICATED)
    assert error.code is ErrorCode.UNAUTHENTICATED
    users = (await admin.request("admin.users", {"query": "bob"}))["users"]
    assert [(u["username"], u["banned"]) for u in users] == [("bob", True)]
    await admin.request("admin.unban", {"username": "bob"})
    again = await server.user("bob", register=False)
    assert again.login_result["username"] == "bob"
    await expect_error(admin.request("admin.ban", {"username": "bob", "until": 1}),
                       ErrorCode.BAD_REQUEST)
    await expect_error(admin.request("admin.ban", {"username": "root"}), ErrorCode.BAD_REQUEST)
    await admin.request("admin.ban", {"username": "bob", "until": 2**50})
    bob_id = (await server.service.store.user_by_name("bob")).user_id
    await server.service.store.db.run_interaction("expire", lambda t: t.execute(
        "UPDATE users SET banned_until = 1 WHERE user_id = ?", (bob_id,)))
    assert (await server.user("bob", register=False)).login_result["username"] == "bob"
    actions = [e["action"] for e in (await admin.request(
        "admin.audit", {"username": "bob"}))["entries"]]
    assert actions.count("user.banned") == 2 and "user.unbanned" in actions


@pytest_twisted.ensureDeferred
async def test_create_user_reset_password_and_roles(server):
    """admin.create_user makes an account that logs in; admin.reset_password ends the
    user's sessions and the new password works; admin.set_role gives and takes
    roles (not one's own admin role); all of it is audited with who did it."""
    admin = await with_roles(server, "root", ["admin"])
    made = await admin.request("admin.create_user", {"username": "dora",
                                                     "password": "dora's long password"})
    assert made["user_id"] > 0
    dora = await server.user("dora", "dora's long password", register=False)
    events = EventLog(dora, "dora")
    await admin.request("admin.reset_password", {"username": "dora",
                                                 "password": "a brand new one 9"})
    assert (await events.next("session.ended")).data == {"reason": "password_changed"}
    assert (await server.user("dora", "a brand new one 9", register=False)).login_result
    await admin.request("admin.set_role", {"username": "dora", "roles": ["auditor"]})
    auditor = await server.user("dora", "a brand new one 9", register=False)
    assert auditor.login_result["roles"] == ["auditor"]
    await expect_error(admin.request("admin.set_role", {"username": "dora",
                                                        "roles": ["emperor"]}),
                       ErrorCode.BAD_REQUEST)
    await expect_error(admin.request("admin.set_role", {"username": "root", "roles": []}),
                       ErrorCode.BAD_REQUEST)
    entries = (await auditor.request("admin.audit", {}))["entries"]
    by_action = {e["action"]: e for e in entries}
    assert by_action["user.created"]["username"] == "dora"
    assert by_action["user.created"]["details"]["by"] == "root"
    assert by_action["role.changed"]["details"]["roles"] == ["auditor"]
    assert "password.reset" in by_action


@pytest_twisted.ensureDeferred
async def test_sessions_and_audit_page_with_cursors(server):
    """admin.sessions lists live sessions (user, peer, client, since); admin.audit
    pages newest first with next_cursor and filters by action."""
    admin = await with_roles(server, "root", ["admin"])
    for name in ("u1", "u2", "u3"):
        await server.user(name)
    seen, cursor = [], None
    while True:
        page = await admin.request("admin.sessions", {"limit": 2, **(
            {"cursor": cursor} if cursor else {})})
        seen += page["sessions"]
        if "next_cursor" not in page:
            break
        cursor = page["next_cursor"]
    names = sorted(s["username"] for s in seen)
    assert names == ["root", "u1", "u2", "u3"]
    assert all(s["peer"].startswith("127.0.0.1") and s["since"] > 0 for s in seen)
    for name in ("u1", "u2", "u3"):
        await admin.request("admin.ban", {"username": name})
    entries, cursor = [], None
    while True:
        page = await admin.request("admin.audit", {"action": "user.banned", "limit": 2,
                                                   **({"cursor": cursor} if cursor else {})})
        entries += page["entries"]
        if "next_cursor" not in page:
            break
        cursor = page["next_cursor"]
    assert [e["username"] for e in entries] == ["u3", "u2", "u1"]
    await expect_error(admin.request("admin.audit", {"cursor": "bogus"}),
                       ErrorCode.BAD_REQUEST)


@pytest_twisted.ensureDeferred
async def test_a_broadcast_reaches_everyone_now_and_the_offline_at_login(server):
    """admin.broadcast: every live session gets system {body, ts, by}, a user in no
    room too; someone offline gets it at their next login; it is audited."""
    admin = await with_roles(server, "root", ["admin"])
    from tests.support.chat import create_room

    online = await server.user("olive")
    events = EventLog(online, "olive")
    away = await server.user("otto")
    await create_room(online, away)  # olive sees otto's presence
    await away.close()
    # Once the server has ended otto's session (its last_seen is set):
    await events.next("presence", username="otto", state="offline")
    await admin.request("admin.broadcast", {"body": "maintenance at 18:00"})
    system = (await events.next("system")).data
    assert system["body"] == "maintenance at 18:00" and system["by"] == "root"
    back = await server.connect()
    later = EventLog(back, "otto")
    await back.login("otto", PASSWORD)
    assert (await later.next("system")).data["body"] == "maintenance at 18:00"
    entries = (await admin.request("admin.audit", {"action": "broadcast"}))["entries"]
    assert entries[0]["details"]["body"] == "maintenance at 18:00"
    await expect_error(admin.request("admin.broadcast", {"body": "  "}), ErrorCode.BAD_REQUEST)


@pytest_twisted.ensureDeferred
async def test_the_monitor_sees_every_message_of_every_room(server):
    """admin.monitor {on}: the auditor's session gets monitor.msg for messages of
    rooms it is not in (burn-after-reading ones too); off stops it; both audited."""
    from tests.support.chat import create_room, say

    auditor = await with_roles(server, "audrey", ["auditor"])
    watch = EventLog(auditor, "audrey")
    alice, bob = await server.user("alice"), await server.user("bob")
    room = (await create_room(alice, bob))["room_id"]  # the auditor is not in it
    await auditor.request("admin.monitor", {"on": True})
    await say(alice, room, "between us")
    await say(bob, room, "burns soon", ttl=60)
    seen = await watch.next("monitor.msg", where=lambda d: d["message"]["body"] == "burns soon")
    assert seen.data["message"]["ttl"] == 60
    assert (await watch.next("monitor.msg")).data["message"]["body"] == "between us"
    await auditor.request("admin.monitor", {"on": False})
    await say(alice, room, "not watched")
    await auditor.request("session.ping")
    assert [e.data["message"]["body"] for e in watch.seen if e.name == "monitor.msg"] == [
        "between us", "burns soon"]
    actions = [e["action"] for e in (await auditor.request("admin.audit", {}))["entries"]]
    assert "monitor.started" in actions and "monitor.stopped" in actions


@pytest_twisted.ensureDeferred
async def test_a_banned_room_refuses_sends_and_joins_and_keeps_its_history(server):
    """admin.ban_room: members are told (room.banned), sends and joins answer banned,
    the history stays readable; admin.rooms lists every room (private and direct
    too) with its ban; admin.unban_room lets the room work again."""
    from tests.support.chat import create_room, say

    admin = await with_roles(server, "root", ["admin"])
    alice, bob = await server.user("alice"), await server.user("bob")
    room = (await create_room(alice, name="rumours"))["room_id"]
    secret = (await create_room(alice, name="secret", visibility="private"))["room_id"]
    await alice.request("dm.open", {"username": "bob"})
    await say(alice, room, "before the ban")
    events = EventLog(alice, "alice")
    await admin.request("admin.ban_room", {"room_id": room, "reason": "off-topic"})
    banned = (await events.next("room.banned")).data
    assert banned == {"room_id": room, "on": True, "reason": "off-topic"}
    await expect_error(say(alice, room, "after"), ErrorCode.BANNED)
    await expect_error(bob.request("room.join", {"room_id": room}), ErrorCode.BANNED)
    history = await alice.request("msg.history", {"room_id": room})
    assert [m["body"] for m in history["messages"]] == ["before the ban"]
    listed = (await admin.request("admin.rooms", {}))["rooms"]
    by_id = {r["room_id"]: r for r in listed}
    assert by_id[room]["banned"] is True and by_id[secret]["banned"] is False
    assert any(r["kind"] == "direct" for r in listed)
    assert [r["name"] for r in (await admin.request("admin.rooms", {"query": "secr"}))[
        "rooms"]] == ["secret"]
    await admin.request("admin.unban_room", {"room_id": room})
    assert (await say(alice, room, "back again"))["seq"] == 2
    await expect_error(admin.request("admin.ban_room", {"room_id": 424242}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_export_writes_json_lines_of_the_range_into_a_file(server):
    """admin.export: the messages of the time range (of every room, or one room or
    sender), edits and deletions marked, as JSON Lines in a file only the exporter
    may download; progress events come along; the export is audited."""
    import json

    from tests.core.test_avatars import download
    from tests.support.chat import create_room, say

    auditor = await with_roles(server, "audrey", ["auditor"])
    progress = EventLog(auditor, "audrey")
    alice, bob = await server.user("alice"), await server.user("bob")
    room = (await create_room(alice, bob, name="ops"))["room_id"]
    other = (await create_room(bob, name="other"))["room_id"]
    first = await say(alice, room, "deploy at 5")
    edited = await say(bob, room, "typo here")
    gone = await say(alice, room, "oops, wrong room")
    await say(bob, other, "elsewhere")
    await bob.request("msg.edit", {"room_id": room, "msg_id": edited["msg_id"],
                                   "body": "fixed"})
    await alice.request("msg.delete", {"room_id": room, "msg_id": gone["msg_id"]})
    result = await auditor.request("admin.export", {"since": first["ts"],
                                                    "until": first["ts"] + 10**7})
    assert result["messages"] == 4
    assert (await progress.next("admin.export.progress")).data == {"messages": 4}
    lines = [json.loads(line) for line in
             (await download(auditor, result["file_id"])).decode().splitlines()]
    assert [(m["room"], m["sender"], m["body"]) for m in lines] == [
        ("ops", "alice", "deploy at 5"), ("ops", "bob", "fixed"), ("ops", "alice", ""),
        ("other", "bob", "elsewhere")]
    assert "edited_ts" in lines[1] and lines[2]["deleted"] is True
    await expect_error(download(alice, result["file_id"]), ErrorCode.NOT_FOUND)
    only = await auditor.request("admin.export", {"since": 0, "until": 2**50,
                                                  "room_id": other})
    assert only["messages"] == 1
    by_bob = await auditor.request("admin.export", {"since": 0, "until": 2**50,
                                                    "username": "bob"})
    assert by_bob["messages"] == 2
    await expect_error(auditor.request("admin.export", {"since": 5, "until": 5}),
                       ErrorCode.BAD_REQUEST)
    audited = (await auditor.request("admin.audit", {"action": "export"}))["entries"]
    assert len(audited) == 3 and audited[-1]["details"]["messages"] == 4


@pytest_twisted.ensureDeferred
async def test_the_compliance_log_keeps_what_members_see_vanish(make_server):
    """With --compliance-log, an edit's old text, a deleted message and an expired
    one stay in the audit log (admins and auditors), while members see them
    vanish as always; expiry events carry no content."""
    from tests.support.chat import create_room, say

    server = await make_server(compliance_log=True)
    auditor = await with_roles(server, "audrey", ["auditor"])
    alice, bob = await server.user("alice"), await server.user("bob")
    room = (await create_room(alice, bob))["room_id"]
    edited = await say(alice, room, "the password is hunter2")
    await alice.request("msg.edit", {"room_id": room, "msg_id": edited["msg_id"],
                                     "body": "(removed)"})
    gone = await say(alice, room, "delete me")
    await alice.request("msg.delete", {"room_id": room, "msg_id": gone["msg_id"]})
    events = EventLog(bob, "bob")
    burned = await say(alice, room, "burn after reading", ttl=1)
    expired = await events.next("msg.expired", timeout=5)
    assert expired.data == {"room_id": room, "msg_id": burned["msg_id"]}
    history = await bob.request("msg.history", {"room_id": room})
    assert [m["body"] for m in history["messages"]] == ["(removed)"]
    entries = (await auditor.request("admin.audit", {}))["entries"]
    kept = {e["action"]: e for e in entries if e["action"].startswith("message.")}
    assert kept["message.edited"]["details"]["body"] == "the password is hunter2"
    assert kept["message.edited"]["details"]["new_body"] == "(removed)"
    assert kept["message.deleted"]["details"]["body"] == "delete me"
    assert kept["message.expired"]["details"]["body"] == "burn after reading"
    assert kept["message.deleted"]["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_without_the_compliance_log_erased_content_is_gone(server):
    """By default nothing of a deleted message's content is kept anywhere."""
    from tests.support.chat import create_room, say

    admin = await with_roles(server, "root", ["admin"])
    alice = await server.user("alice")
    room = (await create_room(alice))["room_id"]
    gone = await say(alice, room, "nobody keeps this")
    await alice.request("msg.delete", {"room_id": room, "msg_id": gone["msg_id"]})
    entries = (await admin.request("admin.audit", {}))["entries"]
    assert not [e for e in entries if "nobody keeps this" in str(e)]


@pytest_twisted.ensureDeferred
async def test_retention_deletes_old_messages_and_unused_files(make_server):
    """--retention-days: the job deletes messages older than the period (and their
    index entries), then attachment files no message refers to any more; newer
    messages and files in use stay."""
    from tests.core.test_avatars import upload
    from tests.support.chat import create_room, say

    server = await make_server(retention_days=30)
    job = server.service.retention
    assert job is not None and job in server.service._timers()
    alice = await server.user("alice")
    room = (await create_room(alice))["room_id"]
    old_file = await upload(alice, b"old attachment", "old.txt")
    kept_file = await upload(alice, b"new attachment", "new.txt")
    old = await say(alice, room, "ancient history", attachments=[old_file["file_id"]])
    await say(alice, room, "recent news", attachments=[kept_file["file_id"]])
    long_ago = old["ts"] - 40 * 86_400_000
    await server.service.store.db.run_interaction("age", lambda t: (
        t.execute("UPDATE messages SET ts = ? WHERE msg_id = ?", (long_ago, old["msg_id"])),
        t.execute("UPDATE files SET ts = ? WHERE file_id IN (?, ?)",
                  (long_ago, old_file["file_id"], kept_file["file_id"]))))
    assert await job.run_once() == (1, 1)
    history = await alice.request("msg.history", {"room_id": room})
    assert [m["body"] for m in history["messages"]] == ["recent news"]
    assert (await alice.request("msg.search", {"query": "ancient"}))["messages"] == []
    await expect_error(alice.request("file.info", {"file_id": old_file["file_id"]}),
                       ErrorCode.NOT_FOUND)
    assert (await alice.request("file.info", {"file_id": kept_file["file_id"]}))["name"] == \
        "new.txt"
    assert await job.run_once() == (0, 0)


@pytest_twisted.ensureDeferred
async def test_logins_failures_logouts_kicks_and_room_deletions_are_audited(server):
    """The audit log records logins (with the address and client), failed logins,
    logouts, kicks and room deletions."""
    from tests.support.chat import create_room

    admin = await with_roles(server, "root", ["admin"])
    alice, bob = await server.user("alice"), await server.user("bob")
    stranger = await server.connect()
    await expect_error(stranger.login("alice", "not the password"), ErrorCode.UNAUTHENTICATED)
    room = (await create_room(alice, bob))["room_id"]
    await alice.request("room.kick", {"room_id": room, "username": "bob", "reason": "noise"})
    await alice.request("room.delete", {"room_id": room})
    await alice.request("auth.logout")
    await wait_lost(alice)

    async def actions() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for entry in (await admin.request("admin.audit", {"limit": 500}))["entries"]:
            found.setdefault(entry["action"], []).append(entry)
        return found

    def logged_out(found: dict[str, list[dict[str, Any]]]) -> bool:
        return "alice" in [e["username"] for e in found.get("logout", [])]

    seen = await actions()
    while not logged_out(seen):  # written in the background once the session ends
        await admin.request("session.ping")
        seen = await actions()
    logins = [e for e in seen["login"] if e["username"] == "alice"]
    assert logins and logins[0]["peer"].startswith("127.0.0.1")
    assert [e["username"] for e in seen["login.failed"]] == ["alice"]
    assert seen["room.kicked"][0]["details"]["reason"] == "noise"
    assert seen["room.kicked"][0]["username"] == "bob"
    assert seen["room.deleted"][0]["details"]["room_id"] == room
    assert sorted(e["username"] for e in seen["logout"]) == ["alice", "root"]  # root's first


@pytest_twisted.ensureDeferred
async def test_uploads_and_downloads_are_in_the_audit_log_once(server):
    """A file upload and its downloads appear in the audit log (file.upload,
    file.download with file_id and size), each once."""
    from tests.core.test_avatars import download, upload
    from tests.support.chat import create_room, say

    admin = await with_roles(server, "root", ["admin"])
    alice, bob = await server.user("alice"), await server.user("bob")
    room = (await create_room(alice, bob))["room_id"]
    stored = await upload(alice, b"quarterly numbers", "q3.csv")
    await say(alice, room, "numbers", attachments=[stored["file_id"]])
    assert await download(bob, stored["file_id"]) == b"quarterly numbers"
    entries = (await admin.request("admin.audit", {}))["entries"]
    files = [(e["action"], e["username"], e["details"]["file_id"]) for e in entries
             if e["action"].startswith("file.")]
    assert sorted(files) == [("file.download", "bob", stored["file_id"]),
                             ("file.upload", "alice", stored["file_id"])]


@pytest_twisted.ensureDeferred
async def test_a_ban_ends_every_session_of_the_user(server):
    """A user logged in twice: both sessions get session.ended {banned} and close."""
    admin = await with_roles(server, "root", ["admin"])
    first = await server.user("bob")
    second = await server.user("bob", register=False)
    logs = [EventLog(first, "bob 1"), EventLog(second, "bob 2")]
    await admin.request("admin.ban", {"username": "bob"})
    for log, conn in zip(logs, (first, second), strict=True):
        assert (await log.next("session.ended")).data == {"reason": "banned"}
        await wait_lost(conn)
    entries = (await admin.request("admin.audit", {"action": "user.banned"}))["entries"]
    assert len(entries) == 1
