"""The installed programs as people use them: twistd chatnet, chatnet-admin, chatnet.

The server runs as a real ``twistd`` subprocess; the terminal client runs in
a pseudo-terminal (pexpect) and is typed at like a person would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.process import TwistdServer, admin, command
from tests.support.terminal import PASSWORD, send_cmd, styled, terminal


@pytest.fixture
def twistd(tmp_path: Path) -> Iterator[TwistdServer]:
    """A real ``twistd chatnet`` with open registration and users alice and bob."""
    server = TwistdServer(tmp_path / "data", "--open-registration").start()
    for name in ("alice", "bob"):
        done = admin(server.data_dir, "create-user", name, "--password", PASSWORD)
        assert done.returncode == 0, done.stderr
    yield server
    server.stop()


def test_twistd_lists_the_chatnet_plugin():
    """The installed environment's twistd knows chatnet and explains its options."""
    listing = subprocess.run([command("twistd"), "--help"], capture_output=True, text=True,
                             timeout=60)
    assert "chatnet" in listing.stdout
    options = subprocess.run([command("twistd"), "chatnet", "--help"], capture_output=True,
                             text=True, timeout=60)
    for option in ("--port", "--interface", "--data-dir", "--database", "--tls-cert",
                   "--tls-key", "--tls-client-ca", "--tls-client-cert-login",
                   "--open-registration", "--max-frame",
                   "--idle-timeout", "--single-session"):
        assert option in options.stdout, option


def test_bad_option_is_refused_with_its_name(tmp_path: Path):
    """A wrong option value stops twistd with a message naming the option."""
    result = subprocess.run([command("twistd"), "-n", "--pidfile=", "chatnet", "--port", "x",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "--port must be a whole number" in result.stdout + result.stderr


def test_first_start_creates_a_dev_ca_and_later_starts_reuse_it(tmp_path: Path):
    """The first start generates <data-dir>/tls/ca.pem and logs its fingerprint;
    a restart reuses the same CA."""
    server = TwistdServer(tmp_path / "data").start()
    first_log = server.text()
    server.stop()
    assert server.ca.exists()
    assert "created development CA" in first_log and str(server.ca) in first_log
    fingerprint = first_log.split("SHA-256 fingerprint ")[1].split(")")[0]
    assert len(fingerprint.split(":")) == 32
    server.start()
    second_log = server.text()
    # twistd re-raises the signal after a clean shutdown, so the status says SIGTERM.
    assert server.stop() == -signal.SIGTERM
    assert "using development CA" in second_log and fingerprint in second_log
    assert "chatnet stopped" in server.text() and "Server Shut Down." in server.text()


def test_admin_creates_and_lists_users_while_the_server_runs(twistd: TwistdServer):
    """chatnet-admin works next to a running server; names are case-folded; a
    taken name, a bad name and a short password are refused."""
    made = admin(twistd.data_dir, "create-user", "Carol", "--password", PASSWORD, "--role",
                 "admin")
    assert made.returncode == 0 and "created carol" in made.stdout
    listing = admin(twistd.data_dir, "list-users")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert any(line.startswith("carol") and "admin" in line for line in lines)
    assert "3 user(s)" in listing.stdout
    assert admin(twistd.data_dir, "create-user", "carol", "--password", PASSWORD).returncode == 1
    bad = admin(twistd.data_dir, "create-user", "no spaces", "--password", PASSWORD)
    assert bad.returncode == 1 and "username" in bad.stderr
    short = admin(twistd.data_dir, "create-user", "dan", "--password", "short")
    assert short.returncode == 1 and "at least 8" in short.stderr
    # The account made while the server ran can log in at once.
    assert send_cmd(twistd, "carol", "--to", "alice", "hi", password=PASSWORD).returncode == 0


def test_send_one_shot_reaches_an_interactive_user(twistd: TwistdServer):
    """`chatnet send --room` joins the public room and delivers; the message shows in
    the other user's terminal; a wrong password exits 1; no password exits 2."""
    alice = terminal(twistd, "alice")
    alice.expect("logged in as alice")
    alice.sendline("/create ops")
    alice.expect("created public room #ops")
    sent = send_cmd(twistd, "bob", "--room", "ops", "deploy", "finished")
    assert sent.returncode == 0, sent.stderr
    assert "sent (seq 1)" in sent.stdout
    alice.expect("deploy finished")
    wrong = send_cmd(twistd, "bob", "--room", "ops", "x", password="not the password")
    assert wrong.returncode == 1 and "unauthenticated" in wrong.stderr
    missing = send_cmd(twistd, "bob", "--room", "ops", "x", password=None)
    assert missing.returncode == 2 and "CHATNET_PASSWORD" in missing.stderr
    alice.sendline("/quit")
    alice.expect(pexpect.EOF)


def test_send_with_a_pin_instead_of_the_ca_file(twistd: TwistdServer):
    """`chatnet --pin` with the CA fingerprint the server logged needs no CA file; a
    wrong pin exits 1 saying the pin did not match; a malformed one is a usage error."""
    logged = twistd.text().split("SHA-256 fingerprint ")[1].split(")")[0]
    sent = send_cmd(twistd, "bob", "--to", "alice", "pinned", trust=("--pin", logged))
    assert sent.returncode == 0, sent.stderr
    lower = logged.replace(":", "").lower()
    sent = send_cmd(twistd, "bob", "--to", "alice", "again",
                    trust=("--ca", str(twistd.ca), "--pin", lower))
    assert sent.returncode == 0, sent.stderr
    wrong = send_cmd(twistd, "bob", "--to", "alice", "x", trust=("--pin", "AB" * 32))
    assert wrong.returncode == 1
    assert "do not match the pinned SHA-256 fingerprint " + "AB:" * 31 + "AB" in wrong.stderr
    bad = send_cmd(twistd, "bob", "--to", "alice", "x", trust=("--pin", "not-hex"))
    assert bad.returncode == 2 and "--pin: pin must be a SHA-256 fingerprint" in bad.stderr


def test_two_people_chat_and_incoming_text_keeps_the_typed_line(twistd: TwistdServer):
    """Alice and Bob chat in a room; a message that arrives while Alice is typing
    prints above her prompt and her half-typed line is sent whole afterwards."""
    alice = terminal(twistd, "alice")
    alice.expect("logged in as alice")
    alice.sendline("/create general")
    alice.expect("created public room #general")
    bob = terminal(twistd, "bob")
    bob.expect("logged in as bob")
    bob.sendline("/join general")
    bob.expect("talking in #general")
    alice.expect("bob joined #general")
    alice.send("this line was typed before")  # no Enter yet
    bob.sendline("hello from bob")
    alice.expect("hello from bob")
    alice.send(" and finished after\r")
    bob.expect("this line was typed before and finished after")
    bob.sendline("/who")
    bob.expect("alice")
    bob.expect("online")
    bob.sendline("/history 5")
    bob.expect("hello from bob")
    for child in (alice, bob):
        child.sendline("/quit")
        child.expect(pexpect.EOF)


def test_missed_messages_are_shown_at_login(twistd: TwistdServer):
    """What was said while a user was offline is printed when they log in."""
    alice = terminal(twistd, "alice")
    alice.expect("logged in as alice")
    alice.sendline("/dm bob")
    alice.expect("talking with @bob")
    alice.sendline("are you around?")
    alice.expect("are you around")
    alice.sendline("/quit")
    alice.expect(pexpect.EOF)
    bob = terminal(twistd, "bob")
    bob.expect(r"\(missed\) ")
    bob.expect("are you around?")
    bob.expect("1 message\\(s\\) arrived while you were away")
    bob.sendline("/quit")
    bob.expect(pexpect.EOF)


def test_unknown_user_can_register_from_the_prompt(twistd: TwistdServer):
    """A login that fails offers /register, which creates the account and logs in."""
    carol = terminal(twistd, "carol")
    carol.expect("login failed")
    carol.expect("/register")
    carol.sendline("/rooms")
    carol.expect("not logged in")
    carol.sendline("/register")
    carol.expect("logged in as carol")
    carol.sendline("/nonsense")
    carol.expect("unknown command")
    carol.sendline("/quit")
    carol.expect(pexpect.EOF)


def test_send_file_and_get_it_back(twistd: TwistdServer, tmp_path: Path):
    """/send-file uploads to the current room; the other side sees the attachment
    with its /get command and downloads identical bytes; a folder is refused."""
    payload = os.urandom(700_000)
    source = tmp_path / "diagram.png"
    source.write_bytes(payload)
    alice = terminal(twistd, "alice")
    alice.expect("logged in as alice")
    alice.sendline("/dm bob")
    alice.expect("talking with @bob")
    bob = terminal(twistd, "bob")
    bob.expect("logged in as bob")
    alice.sendline(f"/send-file {tmp_path}")
    alice.expect("is a folder")
    alice.sendline(f"/send-file {source}")
    alice.expect(r"sent diagram.png \(700.0 kB\) as ([0-9a-f]+)")
    file_id = alice.match.group(1)
    bob.expect(f"/get {file_id}")
    bob.sendline(f"/get {file_id} {tmp_path / 'copy.png'}")
    bob.expect("sha256 verified")
    assert (tmp_path / "copy.png").read_bytes() == payload
    for child in (alice, bob):
        child.sendline("/quit")
        child.expect(pexpect.EOF)


def test_desktop_client_without_a_display_explains_instead_of_crashing():
    """chatnet-qt on a machine with no display exits 2 with a hint (Qt alone would
    abort the process)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([command("chatnet-qt")], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 2
    assert "no display found" in result.stderr


def test_invitations_in_the_terminal(twistd: TwistdServer):
    """An invitation is printed (not a room joined); /invites lists it, /accept joins
    and switches to the room, /decline refuses another; one waiting at login is
    announced; /who shows usernames next to display names."""
    alice = terminal(twistd, "alice")
    alice.expect("logged in as alice")
    bob = terminal(twistd, "bob")
    bob.expect("logged in as bob")
    alice.sendline("/create plans private")
    alice.expect("created private room #plans")
    alice.sendline("/invite bob")
    bob.expect(r"alice invited you to #plans \(/accept plans or /decline plans\)")
    bob.sendline("/rooms")
    bob.expect("you are in no room yet")
    bob.sendline("/invites")
    bob.expect(r"#plans +id \d+  from alice")
    bob.sendline("/accept plans")
    bob.expect("joined #plans")
    alice.expect("bob joined #plans")
    bob.sendline("/who")
    bob.expect(r"@alice +alice +online +\(owner\)")
    alice.sendline("/create secrets private")
    alice.expect("created private room #secrets")
    alice.sendline("/invite bob")
    bob.expect("alice invited you to #secrets")
    bob.sendline("/decline secrets")
    bob.expect("declined the invitation to #secrets")
    bob.sendline("/invites")
    bob.expect("no invitations waiting")
    alice.sendline("/create later private")
    alice.expect("created private room #later")
    bob.sendline("/quit")
    bob.expect(pexpect.EOF)
    alice.sendline("/invite bob")
    alice.expect("invited bob to #later")
    bob = terminal(twistd, "bob")
    bob.expect(r"1 invitation\(s\) waiting for your answer: /invites")
    for child in (alice, bob):
        child.sendline("/quit")
        child.expect(pexpect.EOF)


def test_reactions_show_with_counts_and_stay_current(twistd: TwistdServer):
    """/react puts an emoji on the newest message; the other side sees who reacted and
    the new totals, its own reactions in brackets; text is refused as an emoji, the
    per-user cap is explained, and a message with thousands of reactions (summarised
    by the server) shows its counts."""
    alice = terminal(twistd, "alice")
    alice.expect("logged in as alice")
    alice.sendline("/create general")
    alice.expect("created public room #general")
    bob = terminal(twistd, "bob")
    bob.expect("logged in as bob")
    bob.sendline("/join general")
    bob.expect("talking in #general")
    alice.sendline("lunch?")
    bob.expect("lunch\\?")
    bob.sendline("/react 👍")
    alice.expect(styled("bob reacted 👍 on <alice> 'lunch?' in #general: ", "👍 1"))
    alice.sendline("/react 👍")
    bob.expect(styled("alice reacted 👍 on <alice> 'lunch?' in #general: ", "[👍 2]"))
    bob.sendline("/react abc")
    bob.expect("the reaction must be one emoji")
    for emoji in ("😀", "😁", "😂", "🤣"):
        bob.sendline(f"/react {emoji}")
        alice.expect(f"bob reacted {emoji}")
    bob.sendline("/react 🎉")
    bob.expect("you already have 5 different reactions on this message")
    bob.sendline("/unreact 😀")
    alice.expect("bob took back 😀")
    # Thousands of reactions, stored as they were before the caps existed.
    with sqlite3.connect(twistd.data_dir / "chatnet.db", timeout=10) as db:
        msg_id = db.execute("SELECT msg_id FROM messages WHERE body = 'lunch?'").fetchone()[0]
        db.executemany("INSERT INTO users (user_id, username, display_name, password_hash, "
                       "created_ts) VALUES (?, ?, 'F', 'x', 0)",
                       [(10**12 + i, f"fan{i}") for i in range(2000)])
        db.executemany("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, 0)",
                       [(msg_id, 10**12 + i, "🎉") for i in range(2000)])
    alice.sendline("/history 1")
    alice.expect(styled("<alice> ", "lunch?"))
    alice.expect(styled("🎉 2000", "  ", "[👍 2]", "  ", "😁 1", "  ", "😂 1", "  ", "🤣 1"))
    for child in (alice, bob):
        child.sendline("/quit")
        child.expect(pexpect.EOF)


def test_admin_bans_and_roles_from_the_command_line(twistd: TwistdServer):
    """chatnet-admin set-role, ban, unban and audit work on the running server's
    database: a banned user's live terminal session ends with "banned" and login
    is refused until unban; the audit command lists what was done."""
    bob = terminal(twistd, "bob")
    bob.expect("logged in as bob")
    roles = admin(twistd.data_dir, "set-role", "alice", "auditor")
    assert roles.returncode == 0 and "alice now has role(s): auditor" in roles.stdout
    banned = admin(twistd.data_dir, "ban", "bob", "--reason", "spam")
    assert banned.returncode == 0, banned.stderr
    bob.expect("your account was banned", timeout=30)
    refused = send_cmd(twistd, "bob", "--to", "alice", "hello?")
    assert refused.returncode == 1 and "banned" in refused.stderr
    audit = admin(twistd.data_dir, "audit", "--action", "user.banned")
    assert "user.banned" in audit.stdout and "bob" in audit.stdout and "spam" in audit.stdout
    assert admin(twistd.data_dir, "unban", "bob").returncode == 0
    assert send_cmd(twistd, "bob", "--to", "alice", "back").returncode == 0
    wrong = admin(twistd.data_dir, "ban", "bob", "--until", "2000-01-01")
    assert wrong.returncode == 2 and "--until must be in the future" in wrong.stderr
    bob.sendline("/quit")
    bob.expect(pexpect.EOF)


def test_admin_lists_rooms_exports_migrates_and_backs_up(twistd: TwistdServer,
                                                          tmp_path: Path):
    """chatnet-admin list-rooms, export (a date range to a file, JSON Lines), migrate
    and backup (a consistent SQLite copy that opens and holds the messages), while
    the server runs."""
    import json
    import time

    sent = send_cmd(twistd, "alice", "--to", "bob", "for the records")
    assert sent.returncode == 0, sent.stderr
    rooms = admin(twistd.data_dir, "list-rooms")
    assert rooms.returncode == 0 and "direct" in rooms.stdout and "1 room(s)" in rooms.stdout
    today = time.strftime("%Y-%m-%d", time.gmtime())
    out = tmp_path / "export.jsonl"
    export = admin(twistd.data_dir, "export", today, today, "--output", str(out))
    assert export.returncode == 0, export.stderr
    [line] = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert line["body"] == "for the records" and line["sender"] == "alice"
    again = admin(twistd.data_dir, "export", today, today, "--output", str(out))
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites
    assert "schema at version" in admin(twistd.data_dir, "migrate").stdout
    copy = tmp_path / "backup.db"
    backup = admin(twistd.data_dir, "backup", str(copy))
    assert backup.returncode == 0, backup.stderr
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT body FROM messages").fetchall() == [("for the records",)]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert admin(twistd.data_dir, "backup", str(copy)).returncode == 2


def test_gen_certs_makes_a_ca_and_server_certificate_clients_accept(tmp_path: Path):
    """chatnet-admin gen-certs writes a CA and a server certificate for the given
    names (keys private); a server started with them is accepted by a client that
    trusts the CA file or pins the printed fingerprint; files are never replaced."""
    import re as regex

    certs = tmp_path / "certs"
    made = admin(tmp_path / "unused", "gen-certs", str(certs), "--host", "localhost",
                 "--ip", "127.0.0.1")
    assert made.returncode == 0, made.stderr
    assert oct((certs / "server.key").stat().st_mode & 0o777) == "0o600"
    assert oct((certs / "ca.key").stat().st_mode & 0o777) == "0o600"
    pin = regex.search(r"--pin ([0-9A-F:]+)", made.stdout).group(1)
    server = TwistdServer(tmp_path / "data", "--tls-cert", str(certs / "server.pem"),
                          "--tls-key", str(certs / "server.key")).start()
    try:
        for name in ("alice", "bob"):
            done = admin(server.data_dir, "create-user", name, "--password", PASSWORD)
            assert done.returncode == 0, done.stderr
        via_ca = send_cmd(server, "alice", "--to", "bob", "via the CA",
                          trust=("--ca", str(certs / "ca.pem")))
        assert via_ca.returncode == 0, via_ca.stderr
        pinned = send_cmd(server, "alice", "--to", "bob", "via the pin", trust=("--pin", pin))
        assert pinned.returncode == 0, pinned.stderr
        other = tmp_path / "other-ca"
        assert admin(tmp_path / "unused", "gen-certs", str(other), "--host",
                     "localhost").returncode == 0
        untrusted = send_cmd(server, "alice", "--to", "bob", "x",
                             trust=("--ca", str(other / "ca.pem")))
        assert untrusted.returncode == 1 and "not trust" in untrusted.stderr
    finally:
        server.stop()
    again = admin(tmp_path / "unused", "gen-certs", str(certs), "--host", "localhost")
    assert again.returncode == 2 and "exists" in again.stderr
    nameless = admin(tmp_path / "unused", "gen-certs", str(tmp_path / "other"))
    assert nameless.returncode == 2 and "--host" in nameless.stderr
