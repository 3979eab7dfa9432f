"""Registration, login, resume, logout, password change, single session (PROTOCOL.md 3),
end to end over TLS against a real server."""

from __future__ import annotations

import io

import pytest
import pytest_twisted
from twisted.internet import reactor

from chatnet.cli import admin
from chatnet.errors import ErrorCode
from tests.support.chat import expect_error
from tests.support.events import EventLog, barrier, wait_lost, within
from tests.support.server import PASSWORD

NEW_PASSWORD = "a much better passphrase"


@pytest_twisted.ensureDeferred
async def test_register_then_login(server):
    """auth.register → {user_id, username} (case-folded); auth.login with that name in
    any case → the full login result."""
    conn = await server.connect()
    assert conn.hello_result["registration"] is True
    registered = await conn.register("Alice", PASSWORD, display_name="Alice Liddell")
    assert registered["username"] == "alice"
    assert isinstance(registered["user_id"], int) and registered["user_id"] > 0
    result = await conn.login("ALICE", PASSWORD)
    assert result["user_id"] == registered["user_id"]
    assert result["username"] == "alice"
    assert result["display_name"] == "Alice Liddell"
    assert result["roles"] == []
    assert isinstance(result["session_id"], str) and result["session_id"]
    assert isinstance(result["token"], str) and len(result["token"]) >= 32
    assert (await conn.request("room.list"))["rooms"] == []


@pytest_twisted.ensureDeferred
async def test_register_a_taken_name_is_a_conflict(server):
    """Registering a name that exists (in any case) → conflict."""
    conn = await server.connect()
    await conn.register("bob", PASSWORD)
    await expect_error(conn.register("bob", PASSWORD), ErrorCode.CONFLICT)
    await expect_error(conn.register("BOB", PASSWORD), ErrorCode.CONFLICT)


@pytest_twisted.ensureDeferred
async def test_registration_closed_is_forbidden(make_server):
    """With registration closed, hello says so and auth.register → forbidden."""
    server = await make_server(open_registration=False)
    conn = await server.connect()
    assert conn.hello_result["registration"] is False
    await expect_error(conn.register("carol", PASSWORD), ErrorCode.FORBIDDEN)


@pytest.mark.parametrize("name", ["", "with space", "x" * 33, "bad!", "ünicode", "a/b"])
@pytest_twisted.ensureDeferred
async def test_register_bad_usernames_are_bad_request_naming_username(server, name):
    """Usernames outside 1-32 chars of [a-z0-9._-] → bad_request naming ``username``."""
    conn = await server.connect()
    error = await expect_error(conn.register(name, PASSWORD), ErrorCode.BAD_REQUEST)
    assert "username" in error.message


@pytest_twisted.ensureDeferred
async def test_register_short_password_is_bad_request(server):
    """A password under 8 characters → bad_request naming ``password``."""
    conn = await server.connect()
    error = await expect_error(conn.register("dave", "short"), ErrorCode.BAD_REQUEST)
    assert "password" in error.message


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_look_the_same(server):
    """Wrong password, unknown user and an impossible name all give unauthenticated with
    the same message; the connection can still log in afterwards."""
    conn = await server.connect()
    await conn.register("erin", PASSWORD)
    wrong = await expect_error(conn.login("erin", "not the password"),
                               ErrorCode.UNAUTHENTICATED)
    unknown = await expect_error(conn.login("nobody", PASSWORD), ErrorCode.UNAUTHENTICATED)
    invalid = await expect_error(conn.login("no such user!", PASSWORD),
                                 ErrorCode.UNAUTHENTICATED)
    assert wrong.message == unknown.message == invalid.message
    assert (await conn.login("erin", PASSWORD))["username"] == "erin"


@pytest_twisted.ensureDeferred
async def test_resume_with_token_logs_in_on_a_new_connection(server):
    """auth.resume {token} on a new connection gives the login result for the same user,
    with a new session id."""
    first = await server.user("frank")
    token = first.login_result["token"]
    second = await server.connect()
    resumed = await second.resume(token)
    assert resumed["user_id"] == first.login_result["user_id"]
    assert resumed["username"] == "frank"
    assert resumed["token"] == token
    assert resumed["session_id"] != first.login_result["session_id"]
    assert (await second.request("room.list"))["rooms"] == []


@pytest_twisted.ensureDeferred
async def test_resume_with_an_unknown_token_is_unauthenticated(server):
    """A token the server never issued → unauthenticated."""
    conn = await server.connect()
    await expect_error(conn.resume("forged-token"), ErrorCode.UNAUTHENTICATED)


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session_and_revokes_only_its_token(server):
    """auth.logout → {}, then session.ended {logout} and the close; that session's token
    no longer resumes, another session's token still does."""
    one = await server.user("gina")
    other = await server.connect()
    other_token = (await other.login("gina", PASSWORD))["token"]
    events = EventLog(one, "gina")
    assert await one.request("auth.logout") == {}
    ended = await events.next("session.ended")
    assert ended.data == {"reason": "logout"}
    await wait_lost(one)
    again = await server.connect()
    await expect_error(again.resume(one.login_result["token"]), ErrorCode.UNAUTHENTICATED)
    assert (await again.resume(other_token))["username"] == "gina"


@pytest_twisted.ensureDeferred
async def test_change_password_revokes_every_token(server):
    """auth.change_password checks the old password, refuses a short new one, then
    switches passwords and revokes all the user's resume tokens; the session that
    changed it gets a fresh token (an extension) that resumes."""
    conn = await server.user("hank")
    spare = await server.connect()
    spare_token = (await spare.login("hank", PASSWORD))["token"]
    await expect_error(conn.request("auth.change_password", {
        "old_password": "wrong one!", "new_password": NEW_PASSWORD}), ErrorCode.UNAUTHENTICATED)
    short = await expect_error(conn.request("auth.change_password", {
        "old_password": PASSWORD, "new_password": "short"}), ErrorCode.BAD_REQUEST)
    assert "new_password" in short.message
    changed = await conn.request("auth.change_password", {
        "old_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert set(changed) == {"token"}
    probe = await server.connect()
    for token in (conn.login_result["token"], spare_token):
        await expect_error(probe.resume(token), ErrorCode.UNAUTHENTICATED)
    await expect_error(probe.login("hank", PASSWORD), ErrorCode.UNAUTHENTICATED)
    assert (await probe.login("hank", NEW_PASSWORD))["username"] == "hank"
    fresh = await server.connect()
    assert (await fresh.resume(changed["token"]))["username"] == "hank"


@pytest_twisted.ensureDeferred
async def test_change_password_ends_the_users_other_sessions(server):
    """Every other live session of the user gets session.ended {password_changed} and
    is closed (PROTOCOL.md 3.8); the session that changed it, and other users, carry on."""
    conn = await server.user("hilda")
    other = await server.user("hilda", register=False)
    other_events = EventLog(other, "hilda#2")
    bystander = await server.user("hugo")
    await conn.request("auth.change_password",
                       {"old_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert (await other_events.next("session.ended")).data == {"reason": "password_changed"}
    await wait_lost(other)
    await barrier(conn)
    assert not conn.lost.called
    assert (await conn.request("session.ping"))["ts"] > 0
    await barrier(bystander)
    assert not bystander.lost.called


@pytest_twisted.ensureDeferred
async def test_admin_reset_password_ends_live_sessions(server):
    """``chatnet-admin reset-password`` writes the database directly; the running server
    notices the change and ends the user's live sessions with password_changed, and
    the new password works."""
    conn = await server.user("hector")
    events = EventLog(conn, "hector")
    data_dir = server.service.config.data_dir
    args = admin.parser().parse_args(["--data-dir", str(data_dir), "reset-password", "hector",
                                      "--password", NEW_PASSWORD])
    out = io.StringIO()
    assert await admin.run(reactor, args, out) == 0
    assert "sessions are ended" in out.getvalue()
    assert (await events.next("session.ended")).data == {"reason": "password_changed"}
    await wait_lost(conn)
    probe = await server.connect()
    assert (await probe.login("hector", NEW_PASSWORD))["username"] == "hector"
    entries = await server.service.store.audit_entries("password.reset")
    assert [e["username"] for e in entries] == ["hector"]


@pytest_twisted.ensureDeferred
async def test_two_sessions_of_one_user_coexist_by_default(server):
    """Without single_session, a second login leaves the first session alone."""
    first = await server.user("ivy")
    second = await server.user("ivy", register=False)
    await barrier(first)
    assert not first.lost.called
    assert first.login_result["session_id"] != second.login_result["session_id"]


@pytest_twisted.ensureDeferred
async def test_single_session_replaces_the_first_session(make_server):
    """With single_session, logging in again sends session.ended {replaced} to the
    first session and closes it; the new one works."""
    server = await make_server(single_session=True)
    first = await server.user("jack")
    events = EventLog(first, "jack#1")
    second = await server.user("jack", register=False)
    ended = await events.next("session.ended")
    assert ended.data == {"reason": "replaced"}
    await wait_lost(first)
    assert (await within(second.request("room.list"), "room.list"))["rooms"] == []


@pytest_twisted.ensureDeferred
async def test_server_shutdown_ends_sessions_with_reason_shutdown(make_server):
    """Stopping the server sends session.ended {shutdown} to every session and closes."""
    server = await make_server()
    conn = await server.user("kate")
    events = EventLog(conn, "kate")
    await server.stop()
    assert (await events.next("session.ended")).data == {"reason": "shutdown"}
    await wait_lost(conn)


@pytest_twisted.ensureDeferred
async def test_a_credentials_check_during_a_login_leaves_the_new_session_alone(make_server):
    """A login made after a password reset, with the server's check for password
    changes running while the login is still finishing (here: forced in the middle
    of it), keeps its session; the session from before the reset is ended. The
    session counts as proven from the moment it is reachable, not from when the
    login returns."""
    server = await make_server(credentials_poll=3600)  # only the forced check
    old = await server.user("hector")
    old_events = EventLog(old, "hector")
    args = admin.parser().parse_args(["--data-dir", str(server.service.config.data_dir),
                                      "reset-password", "hector", "--password", NEW_PASSWORD])
    assert await admin.run(reactor, args, io.StringIO()) == 0
    users = server.service.chat_services.users
    started, ended = users.session_started, []

    async def check_then_start(actor):
        ended.append(await server.service.credential_watch.check_now())
        await started(actor)

    users.session_started = check_then_start
    new = await server.connect()
    new_events = EventLog(new, "hector again")
    assert (await new.login("hector", NEW_PASSWORD))["username"] == "hector"
    assert ended == [1]  # the check did run, and saw the reset: the old session
    assert (await old_events.next("session.ended")).data == {"reason": "password_changed"}
    await barrier(new)
    assert not new.lost.called
    assert [e.name for e in new_events.seen if e.name == "session.ended"] == []
