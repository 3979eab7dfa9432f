"""The terminal client as a person uses it every day (issue 11): Ctrl-C and signals,
a port where nothing answers, a wrong password, downloads that never overwrite,
huge pastes, what the screen shows, and the commands the desktop client has.

Each test runs the real ``chatnet`` program in a pseudo-terminal against a real
``twistd chatnet``; :class:`tests.support.terminal.Screen` reads the screen as
the person sees it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.process import TwistdServer, admin
from tests.support.terminal import PASSWORD, print_screens, quit_cleanly, send_cmd, terminal


def _server(tmp_path: Path, *options: str) -> TwistdServer:
    server = TwistdServer(tmp_path / "data", *options).start()
    for name in ("alice", "bob"):
        done = admin(server.data_dir, "create-user", name, "--password", PASSWORD)
        assert done.returncode == 0, done.stderr
    return server


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[TwistdServer]:
    """A server where registration is closed (the default), users alice and bob."""
    server = _server(tmp_path)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def screens() -> Iterator[None]:
    """After each test, the screens of its clients (shown by pytest if it failed)."""
    yield
    print_screens()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The clients' XDG_STATE_HOME."""
    path = tmp_path / "state"
    path.mkdir()
    return path


#: Terminal styling (colour, bold) that may come between the parts of a printed line.
ANSI = "(?:\x1b\\[[0-9;?]*[A-Za-z])*"


def parts(*patterns: str) -> str:
    """A pattern for regular expressions printed in turn, styling allowed between."""
    return ANSI.join(patterns)


def said(sender: str, text: str) -> str:
    """The pattern of ``<sender> text`` as a message line prints it."""
    return parts(re.escape(f"<{sender}> "), re.escape(text))


def presence_of(watcher: pexpect.spawn, user: str) -> str:
    """``user``'s presence as ``/who`` in the watcher's current room prints it."""
    watcher.sendline("/who")
    watcher.expect(rf"@{user} +{user} +(\w+)")
    return str(watcher.match.group(1))


def goes_offline(watcher: pexpect.spawn, user: str) -> bool:
    """Whether ``/who`` shows ``user`` offline within a few tries: the server may
    answer the watcher before it has read the leaver's closed connection (the
    terminal client prints no presence events to wait for)."""
    return any(presence_of(watcher, user) == "offline" for _ in range(20))


def logged_in(server: TwistdServer, user: str, state: Path) -> pexpect.spawn:
    """``chatnet`` as ``user`` in a pseudo-terminal, once it says it is logged in."""
    child = terminal(server, user, state_dir=state)
    child.expect(f"logged in as {user}")
    return child


def room_for_two(alice: pexpect.spawn, bob: pexpect.spawn, name: str = "general") -> None:
    alice.sendline(f"/create {name}")
    alice.expect(f"created public room #{name}")
    bob.sendline(f"/join {name}")
    bob.expect(f"talking in #{name}")


# -- leaving: Ctrl-C, Ctrl-D, signals ----------------------------------------------------------

def test_ctrl_c_clears_the_line_and_twice_on_an_empty_line_quits_and_logs_out(
        closed: TwistdServer, state: Path):
    """Ctrl-C with text typed clears it (nothing is sent, no traceback); on an empty
    line it asks, and a second Ctrl-C logs out and ends the program (exit 0): the
    others see the person go offline."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    # Type at the prompt (not while /create still runs): its redraw after the
    # join notice shows it is reading keys.
    alice.expect("bob joined #general")
    alice.expect("#general>")
    alice.send("this must never be sent")
    alice.expect("never be sent")
    alice.sendcontrol("c")
    alice.sendline("after the clear")
    bob.expect(said("alice", "after the clear"))
    assert bob.screen.count("never be sent") == 0, bob.screen.text()
    assert presence_of(bob, "alice") == "online"
    alice.sendcontrol("c")
    alice.expect("press Ctrl-C again to quit")
    alice.sendcontrol("c")
    alice.expect("logging out")
    alice.expect(pexpect.EOF)
    alice.close()
    assert alice.exitstatus == 0
    assert "Traceback" not in alice.screen.text()
    assert goes_offline(bob, "alice")
    quit_cleanly(bob)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_log_out_and_end_the_program(closed: TwistdServer, state: Path,
                                                        signum: int):
    """SIGTERM and SIGHUP (the terminal closed) log the person out and end the
    program promptly: the others see them offline at once."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.send("half a line")
    alice.expect("half a line")
    os.kill(alice.pid, signum)
    alice.expect(pexpect.EOF, timeout=10)
    alice.close()
    assert alice.exitstatus == (0 if signum == signal.SIGTERM else 1)
    assert "Traceback" not in alice.screen.text()
    assert goes_offline(bob, "alice")
    assert closed.log.read_text().count("alice logged out") == 1
    quit_cleanly(bob)


# -- connecting and logging in ----------------------------------------------------------------

def test_a_port_where_no_chatnet_server_answers_fails_within_the_timeout(
        closed: TwistdServer, state: Path):
    """Something that accepts connections and never answers (here a plain socket, as
    a Redis port would): the client says so within --timeout, and /quit leaves."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        started = time.monotonic()
        child = terminal(closed, "alice", state_dir=state, extra=("--timeout", "1"),
                         port=listener.getsockname()[1])
        child.expect("cannot connect to localhost:")
        child.expect(r"no chatnet server answered at [0-9.]+:\d+ within 1 s")
        assert time.monotonic() - started < 10
        child.expect("/login to try again, or /quit")
        quit_cleanly(child)
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def test_a_wrong_password_can_be_retried_with_login(closed: TwistdServer, state: Path):
    """A wrong password is no dead end: the client offers /login (not /register, which
    this server does not allow), asks for the password without echoing it, and logs in."""
    alice = terminal(closed, "alice", password="not my password", state_dir=state)
    alice.expect("login failed: ")
    alice.expect("/login to try another password")
    alice.expect("or /quit")
    assert "/register" not in alice.screen.text()
    alice.sendline("/rooms")
    alice.expect("not logged in: /login")
    alice.sendline("/register")
    alice.expect("this server does not let people register")
    alice.sendline("/login")
    alice.expect("Password for alice:")
    alice.sendline(PASSWORD)
    alice.expect("logged in as alice")
    assert PASSWORD not in alice.screen.text()
    quit_cleanly(alice)


def test_register_is_suggested_where_the_server_allows_it(tmp_path: Path, state: Path):
    """On a server with open registration, a failed login names /register too."""
    server = _server(tmp_path, "--open-registration")
    try:
        carol = terminal(server, "carol", state_dir=state)
        carol.expect("login failed")
        carol.expect("/register to create the account 'carol'")
        quit_cleanly(carol)
    finally:
        server.stop()


# -- downloads ------------------------------------------------------------------------------

def test_get_never_overwrites_and_refuses_hidden_names(closed: TwistdServer, state: Path,
                                                       tmp_path: Path):
    """/get without a destination saves "name (1).ext" next to an existing file
    (which stays as it was); a file named like ".bashrc" needs a destination."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    existing = downloads / "notes.tar.gz"
    existing.write_bytes(b"mine, keep it")
    for name, payload in (("notes.tar.gz", b"theirs 1"), (".bashrc", b"alias ls='rm -rf'")):
        (tmp_path / name).write_bytes(payload)
    alice = logged_in(closed, "alice", state)
    alice.sendline("/dm bob")
    alice.expect("talking with @bob")
    file_ids = []
    for name in ("notes.tar.gz", ".bashrc"):
        alice.sendline(f"/send-file {tmp_path / name}")
        alice.expect(rf"sent {name} \([0-9.]+ B\) as ([0-9a-f]+)")
        file_ids.append(alice.match.group(1))
    bob = terminal(closed, "bob", state_dir=state, cwd=downloads)
    bob.expect("logged in as bob")
    bob.sendline(f"/get {file_ids[0]}")
    bob.expect(r"notes.tar.gz exists; saving as notes \(1\).tar.gz")
    bob.expect("sha256 verified")
    assert existing.read_bytes() == b"mine, keep it"
    assert (downloads / "notes (1).tar.gz").read_bytes() == b"theirs 1"
    bob.sendline(f"/get {file_ids[1]}")
    bob.expect("which is hidden or not a plain name; choose one")
    assert not (downloads / ".bashrc").exists()
    bob.sendline(f"/get {file_ids[1]} {downloads / 'their-bashrc.txt'}")
    bob.expect("sha256 verified")
    assert (downloads / "their-bashrc.txt").read_bytes() == b"alias ls='rm -rf'"
    quit_cleanly(alice, bob)


# -- typing ---------------------------------------------------------------------------------

def test_a_huge_paste_is_cut_at_the_body_limit_and_memory_stays_bounded(
        closed: TwistdServer, state: Path):
    """40,000 characters typed without bracketed paste: the line stops at the server's
    body limit with one notice, the process stays small, and the cut line can be sent."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    chunk = "0123456789" * 100
    for _ in range(40):
        alice.send(chunk)
    alice.expect("a message holds at most 16,000 characters", timeout=120)
    alice.sendline("")
    bob.expect(said("alice", "0123456789"), timeout=60)
    with open(f"/proc/{alice.pid}/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    assert rss_kib < 300 * 1024, f"the client grew to {rss_kib // 1024} MiB"
    assert alice.screen.count("a message holds at most") == 1
    quit_cleanly(alice, bob)


# -- what the screen shows ----------------------------------------------------------------

def test_own_line_shows_once_and_a_resent_message_is_not_missed(closed: TwistdServer,
                                                                  state: Path):
    """What a person sends appears once on their screen (the server's echo, not the
    typed line as well); a message typed while the server is down is sent after
    the reconnect and shown once, not as "(missed)"."""
    alice = logged_in(closed, "alice", state)
    alice.sendline("/create general")
    alice.expect("created public room #general")
    alice.sendline("only once please")
    alice.expect(said("alice", "only once please"))
    alice.sendline("/help")
    alice.expect("Anything else is sent")
    assert alice.screen.count("only once please") == 1, alice.screen.text()
    closed.stop()
    alice.expect("connection lost; reconnecting")
    alice.sendline("written while away")
    closed.start()
    # Caught up (and printed) before the session announces itself connected.
    alice.expect(said("alice", "written while away"), timeout=60)
    alice.expect("connected again")
    alice.sendline("/help")
    alice.expect("Anything else is sent")
    assert alice.screen.count("written while away") == 1, alice.screen.text()
    assert alice.screen.count("(missed)") == 0, alice.screen.text()
    quit_cleanly(alice)


def test_a_direct_message_seen_live_is_not_shown_again_at_the_next_login(
        closed: TwistdServer, state: Path):
    """Bob, talking in another room, sees Alice's direct message live and is told how
    to answer (/dm alice); at his next login it is not "arrived while you were away"."""
    bob = logged_in(closed, "bob", state)
    bob.sendline("/create lobby")
    bob.expect("created public room #lobby")
    alice = logged_in(closed, "alice", state)
    alice.sendline("/dm bob")
    alice.expect("talking with @bob")
    alice.sendline("psst, bob")
    bob.expect(r"alice started a conversation with you \(/dm alice\)")
    bob.expect(said("alice", "psst, bob"))
    quit_cleanly(bob)
    bob = logged_in(closed, "bob", state)
    bob.expect("your rooms:")
    bob.sendline("/help")
    bob.expect("Anything else is sent")
    assert "(missed)" not in bob.screen.text()
    assert "arrived while you were away" not in bob.screen.text()
    quit_cleanly(alice, bob)


def test_kicked_and_invited_while_offline_are_told_at_the_next_login(closed: TwistdServer,
                                                                      state: Path):
    """Removed from a room and invited to another while logged out: both are said at
    the next login, with what to type."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.expect("bob joined #general")
    quit_cleanly(bob)
    alice.sendline("/kick bob enough")
    alice.expect("bob was removed from #general")
    alice.sendline("/create plans private")
    alice.expect("created private room #plans")
    alice.sendline("/invite bob")
    alice.expect("invited bob")
    bob = logged_in(closed, "bob", state)
    bob.expect("you are no longer in #general")
    bob.expect(r"alice invited you to #plans \(/accept plans or /decline plans\)")
    quit_cleanly(alice, bob)


# -- the commands the desktop client has ----------------------------------------------------

def test_reply_edit_delete_and_react_by_short_reference(closed: TwistdServer, state: Path):
    """Each message is printed with a short reference; /reply, /edit, /delete and
    /react take it, and the other side sees the answer, the edit, the deletion and
    the reaction."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.sendline("lunch at noon?")
    bob.expect(parts(r"\] (\w+) ", "#general ", said("alice", "lunch at noon?")))
    ref = bob.match.group(1)
    bob.sendline(f"/reply {ref} yes, the usual place")
    answer = parts(re.escape("(re <alice> lunch at noon?) "), said("bob", "yes, the usual"))
    alice.expect(answer)
    bob.expect(parts(r"\] (\w+) ", "#general ", answer))
    own = bob.match.group(1)
    bob.sendline(f"/edit {own} yes, at the new place")
    alice.expect("was edited: yes, at the new place")
    bob.sendline(f"/react {ref} 👍")
    alice.expect(re.escape("bob reacted 👍 on <alice> 'lunch at noon?'"))
    bob.sendline(f"/delete {own}")
    alice.expect("a message in #general was deleted")
    bob.sendline("/delete zzz")
    bob.expect("no message 'zzz' on the screen lately")
    bob.sendline(f"/edit {ref} not mine to change")
    bob.expect("forbidden")
    quit_cleanly(alice, bob)


def test_me_topic_members_presence_status_and_read(closed: TwistdServer, state: Path):
    """/me is shown as an action, /topic sets and shows the topic, /members lists the
    room, /away and /status change what others see, /read marks the room read."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.sendline("/me waves")
    bob.expect(re.escape("* alice waves"))
    alice.sendline("/topic Friday release")
    alice.expect("topic of #general: Friday release")
    alice.sendline("/away")
    alice.expect("you are away")
    bob.sendline("/members")
    bob.expect(r"@alice +alice +away")
    alice.sendline("/status at the dentist")
    alice.expect("status: at the dentist")
    alice.sendline("/status")
    alice.expect("you are away: at the dentist")
    alice.sendline("/read")
    alice.expect("#general marked read")
    quit_cleanly(alice, bob)


def test_passwd_changes_the_password(closed: TwistdServer, state: Path):
    """/passwd asks for the old password and the new one twice (never echoed); the
    new one logs in, the old one no longer does."""
    alice = logged_in(closed, "alice", state)
    alice.sendline("/passwd")
    alice.expect("Current password:")
    alice.sendline(PASSWORD)
    alice.expect("New password:")
    alice.sendline("a brand new secret 7")
    alice.expect("New password again:")
    alice.sendline("a brand new secret 7")
    alice.expect("password changed")
    assert "a brand new secret" not in alice.screen.text()
    quit_cleanly(alice)
    old = send_cmd(closed, "alice", "--to", "bob", "hi")
    assert old.returncode == 1 and "unauthenticated" in old.stderr
    new = send_cmd(closed, "alice", "--to", "bob", "hi", password="a brand new secret 7")
    assert new.returncode == 0, new.stderr


def test_send_reads_the_message_from_standard_input(closed: TwistdServer, state: Path):
    """``chatnet send --to bob -`` sends what comes on standard input (several lines
    kept); more than the body limit is refused before connecting."""
    sent = send_cmd(closed, "alice", "--to", "bob", "-", stdin="line one\nline two\n")
    assert sent.returncode == 0, sent.stderr
    bob = logged_in(closed, "bob", state)
    bob.expect("line one")
    bob.expect("line two")
    quit_cleanly(bob)
    huge = send_cmd(closed, "alice", "--to", "bob", "-", stdin="x" * 20_000)
    assert huge.returncode == 2
    assert "longer than 16,000 characters" in huge.stderr


def test_search_finds_chinese_and_stemmed_words_with_the_matches_marked(
        closed: TwistdServer, state: Path):
    """/search finds a two-character Chinese word inside a sentence and an English
    word by its stem, prints each result with its date and a reference that /reply
    takes, and says so when nothing matches; #ROOM limits it to one room."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.sendline("报告数据已上传")
    alice.expect("报告数据已上传")
    alice.sendline("the files were uploaded")
    alice.expect("the files were uploaded")
    bob.sendline("/search 数据")
    bob.expect("1 found for '数据', best first:")
    bob.expect(parts(r"\[\d{4}-\d\d-\d\d \d\d:\d\d\] (\w+) ", "#general ",
                     re.escape("<alice> "), "报告", "数据", "已上传"))
    ref = bob.match.group(1)
    bob.sendline("/search #general upload")
    bob.expect(parts(re.escape("<alice> "), "the files were ", "uploaded"))
    bob.sendline("/search nothing-like-this")
    bob.expect("nothing found for 'nothing-like-this'")
    bob.sendline(f"/reply {ref} got it")
    alice.expect(parts(re.escape("(re <alice> 报告数据已上传) "), said("bob", "got it")))
    quit_cleanly(alice, bob)


def test_history_by_date(closed: TwistdServer, state: Path):
    """/history --date YYYY-MM-DD shows the room from that day's first message on; a
    day with nothing since says so; a malformed date is explained."""
    alice = logged_in(closed, "alice", state)
    alice.sendline("/create general")
    alice.expect("created public room #general")
    for text in ("first of the day", "second", "third"):
        alice.sendline(text)
        alice.expect(text)
    today = time.strftime("%Y-%m-%d")
    alice.sendline(f"/history --date {today}")
    alice.expect(f"#general around {today}; the day's first message is")
    alice.expect("first of the day")
    alice.expect("third")
    alice.sendline("/history --date 2999-01-01")
    alice.expect("#general around 2999-01-01; nothing since then")
    alice.sendline("/history --date 06/12/2026")
    alice.expect("'06/12/2026' is not a date like")
    quit_cleanly(alice)


def test_export_writes_json_lines_and_a_readable_file(closed: TwistdServer, state: Path,
                                                      tmp_path: Path):
    """/export FROM TO NAME writes every room's messages of those days to NAME.jsonl
    (one JSON object per line) and NAME.txt (readable), and never replaces a file."""
    import json

    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.sendline("the plan is 数据 first")
    bob.expect("the plan is")
    alice.sendline("/dm bob")
    alice.expect("talking with @bob")
    alice.sendline("just between us")
    bob.expect("just between us")
    today = time.strftime("%Y-%m-%d")
    name = tmp_path / "my-chats"
    (tmp_path / "my-chats.txt").write_text("keep me")
    alice.sendline(f"/export {today} {today} {name}")
    alice.expect(r"exported 2 message\(s\) from 2 room\(s\) to ")
    assert not (tmp_path / "my-chats.jsonl").exists()  # one name for both files
    lines = [json.loads(line) for line in
             (tmp_path / "my-chats (1).jsonl").read_text("utf-8").splitlines()]
    assert sorted((m["room"], m["body"], m["sender"]) for m in lines) == [
        ("#general", "the plan is 数据 first", "alice"), ("@bob", "just between us", "alice")]
    assert all(m["time"].startswith(time.strftime("%Y-%m-%dT", time.gmtime())) for m in lines)
    assert (tmp_path / "my-chats.txt").read_text() == "keep me"
    readable = (tmp_path / "my-chats (1).txt").read_text("utf-8")
    assert "== #general ==" in readable and "<alice> the plan is 数据 first" in readable
    assert "== @bob ==" in readable and "<alice> just between us" in readable
    alice.sendline(f"/export 2000-01-01 2000-01-31 {tmp_path / 'old'}")
    alice.expect(r"exported 0 message\(s\)")
    quit_cleanly(alice, bob)


def test_contacts_add_accept_whois(closed: TwistdServer, state: Path):
    """/add asks, the other side is told live (and again at login) and answers with
    /accept @USER; /contacts lists contacts with presence and requests; /whois shows
    a profile; /unfriend removes."""
    alice = logged_in(closed, "alice", state)
    alice.sendline("/add bob we met at the offsite")
    alice.expect("asked bob to be a contact")
    bob = logged_in(closed, "bob", state)
    bob.expect(re.escape("alice wants to be your contact (/accept @alice or /decline @alice)"))
    alice.sendline("/contacts")
    alice.expect("@bob +has not answered your request yet")
    bob.sendline("/accept @alice")
    bob.expect("alice is now one of your contacts")
    alice.expect("bob is now one of your contacts")
    alice.sendline("/contacts")
    alice.expect(r"1 contact\(s\):")
    alice.expect(r"@bob +bob +online")
    bob.sendline("/status out to lunch")
    bob.expect("status: out to lunch")
    alice.sendline("/whois bob")
    alice.expect("@bob: bob")
    alice.expect("status: out to lunch")
    alice.expect("online")
    quit_cleanly(bob)
    alice.sendline("/whois @bob")
    alice.expect(r"offline, last seen \d{4}-\d\d-\d\d \d\d:\d\d")
    alice.sendline("/unfriend bob")
    alice.expect("bob is no longer a contact")
    alice.sendline("/contacts")
    alice.expect("no contacts yet")
    alice.sendline("/add carol")
    alice.expect("not_found")
    quit_cleanly(alice)


def test_feed_post_like_and_comment(closed: TwistdServer, state: Path):
    """/post reaches a contact live with a reference; /like and /comment on it are
    told to the author; /feed lists the post with its likes and comments."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    alice.sendline("/add bob")
    bob.expect("alice wants to be your contact")
    bob.sendline("/accept @alice")
    alice.expect("bob is now one of your contacts")
    alice.sendline("/post the new office opens on Monday")
    alice.expect("posted as p1: your contacts see it")
    bob.expect(parts(r"\] (p\w+) ", "feed ", re.escape("<alice> "),
                     "the new office opens on Monday"))
    ref = bob.match.group(1)
    bob.sendline(f"/like {ref}")
    alice.expect("bob likes the post p1")
    bob.sendline(f"/comment {ref} finally!")
    alice.expect("bob on p1: finally!")
    alice.sendline("/feed")
    alice.expect(parts(re.escape("<alice> "), "the new office opens on Monday"))
    alice.expect("♥ bob")
    alice.expect("<bob> finally!")
    bob.sendline("/like p99")
    bob.expect("no post 'p99' shown lately")
    quit_cleanly(alice, bob)


def test_a_post_past_the_posting_budget_says_how_long_to_wait(closed: TwistdServer,
                                                              state: Path):
    """Twenty posts at once use up the posting budget (then one per 30 s): the
    twenty-first is refused with the server's reason and the wait it named."""
    alice = logged_in(closed, "alice", state)
    for n in range(1, 21):
        alice.sendline(f"/post news {n}")
        alice.expect(r"posted as p\w+: your contacts see it")
    alice.sendline("/post one too many")
    alice.expect(r"rate_limited: too many posts requests; slow down \(try again in (\d+) s\)")
    assert 2 <= int(alice.match.group(1)) <= 30
    quit_cleanly(alice)


def test_block_hides_a_users_messages(closed: TwistdServer, state: Path):
    """/block: the blocked user's messages in a shared room no longer print for the
    blocker (the others still see them); /blocked lists them; /unblock ends it."""
    alice = logged_in(closed, "alice", state)
    bob = logged_in(closed, "bob", state)
    room_for_two(alice, bob)
    alice.sendline("/block bob")
    alice.expect("bob is blocked")
    bob.sendline("you will not see this")
    bob.expect(said("bob", "you will not see this"))
    alice.sendline("/blocked")
    alice.expect("you blocked: bob")
    assert "you will not see this" not in alice.screen.text()
    alice.sendline("/unblock bob")
    alice.expect("bob is no longer blocked")
    bob.sendline("and now you do")
    alice.expect(said("bob", "and now you do"))
    quit_cleanly(alice, bob)
