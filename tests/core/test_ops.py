"""The op registry and argument validation (chatnet/wire/ops.py), without a network."""

from __future__ import annotations

import inspect
import re

import pytest

from chatnet.errors import ChatError, ErrorCode
from chatnet.services.accounts import AccountPerspective
from chatnet.services.admin import AdminPerspective
from chatnet.services.calls import CallPerspective
from chatnet.services.feed import FeedPerspective
from chatnet.services.files import FilePerspective
from chatnet.services.messages import MessagePerspective
from chatnet.services.rooms import RoomPerspective
from chatnet.services.users import UserPerspective
from chatnet.wire.ops import (
    MAX_BODY,
    MAX_HISTORY_LIMIT,
    MAX_ID,
    OPS,
    Bool,
    Field,
    Int,
    Op,
    Str,
    Username,
)
from chatnet.wire.server import ChatServerProtocol


def bad(fn, *args, **kwargs) -> str:
    """Run ``fn`` expecting ``bad_request``; return the message."""
    with pytest.raises(ChatError) as info:
        fn(*args, **kwargs)
    assert info.value.code is ErrorCode.BAD_REQUEST
    return info.value.message


# -- str -----------------------------------------------------------------------------------


def test_str_accepts_a_string_within_bounds():
    """A str field returns the string unchanged when its length is within bounds."""
    assert Str("name", 5).check("abcde") == "abcde"
    assert Str("topic", 5, min_len=0).check("") == ""


def test_str_refuses_other_types_naming_the_field():
    """A str field refuses bytes, ints and None with a message naming the field."""
    field = Str("name", 10)
    for value in (b"bytes", 3, None, ["a"]):
        assert bad(field.check, value) == "name must be a string"


def test_str_enforces_min_and_max_length():
    """Empty (min 1), too short (min 3) and too long strings are refused, naming the field."""
    assert bad(Str("name", 10).check, "") == "name must not be empty"
    assert bad(Str("code", 10, min_len=3).check, "ab") == "code must be at least 3 characters"
    assert bad(Str("name", 3).check, "abcd") == "name must be at most 3 characters"


def test_str_length_counts_characters_not_bytes():
    """Bounds are in characters: four 3-byte characters fit a max_len of 4."""
    assert Str("name", 4).check("汉字汉字") == "汉字汉字"


def test_str_choices():
    """A field with choices accepts only those values."""
    field = Field("visibility", "str", choices=frozenset({"public", "private"}))
    assert field.check("public") == "public"
    assert bad(field.check, "secret") == "visibility must be one of private, public"


def test_str_pattern_must_match_the_whole_value():
    """A pattern must match the whole value, not a prefix."""
    field = Field("code", "str", pattern=re.compile(r"[a-z]+"))
    assert field.check("abc") == "abc"
    assert bad(field.check, "abc1") == "code has characters that are not allowed"


# -- usernames -------------------------------------------------------------------------------


def test_username_is_case_folded_and_stripped():
    """Usernames are case-folded and stripped before checking (PROTOCOL.md 3.3)."""
    assert Username().check("  Alice.B_c-1 ") == "alice.b_c-1"


@pytest.mark.parametrize("name", ["", "   ", "a b", "bob!", "ünï", "x" * 33, "al/ice", "a@b"])
def test_username_pattern_refuses_bad_names(name):
    """Usernames outside 1-32 chars of [a-z0-9._-] are bad_request naming the field."""
    assert "username" in bad(Username().check, name)


def test_username_length_bounds():
    """A username of exactly 32 characters passes; 1 character passes."""
    assert Username().check("x" * 32) == "x" * 32
    assert Username().check("Q") == "q"


def test_username_field_label_is_its_own_name():
    """A username field called ``sender`` names ``sender`` in its error."""
    message = bad(Username("sender").check, "no spaces")
    assert message == "sender has characters that are not allowed"


# -- int -----------------------------------------------------------------------------------


def test_int_bounds_are_inclusive():
    """Int bounds include both ends and refuse values beyond them."""
    field = Int("limit", minimum=1, maximum=200)
    assert field.check(1) == 1
    assert field.check(200) == 200
    assert bad(field.check, 0) == "limit must be at least 1"
    assert bad(field.check, 201) == "limit must be at most 200"


def test_ids_are_positive_and_fit_64_bits():
    """Id fields accept 1..2**63-1 and refuse 0, negatives and 2**63."""
    field = Int("room_id")
    assert field.check(MAX_ID) == MAX_ID
    assert "at least 1" in bad(field.check, 0)
    assert "at least 1" in bad(field.check, -5)
    assert "at most" in bad(field.check, 2**63)


def test_bool_is_not_an_int():
    """``true`` is refused where an integer is expected (bool is an int in Python)."""
    assert bad(Int("room_id").check, True) == "room_id must be an integer"
    assert bad(Int("seq", minimum=0).check, False) == "seq must be an integer"


def test_int_refuses_floats_and_strings():
    """1.0 and "1" are not integers."""
    assert bad(Int("room_id").check, 1.0) == "room_id must be an integer"
    assert bad(Int("room_id").check, "1") == "room_id must be an integer"


# -- bool, bin, list, map ---------------------------------------------------------------------


def test_bool_accepts_only_true_and_false():
    """A bool field refuses 0/1 and strings."""
    field = Bool("accept")
    assert field.check(True) is True
    assert field.check(False) is False
    for value in (0, 1, "true", None):
        assert bad(field.check, value) == "accept must be true or false"


def test_bin_accepts_bytes_within_bounds():
    """A bin field takes bytes up to max_len and refuses str and longer blobs."""
    field = Field("data", "bin", max_len=4)
    assert field.check(b"\x00\x01") == b"\x00\x01"
    assert bad(field.check, "text") == "data must be binary"
    assert bad(field.check, b"12345") == "data must be at most 4 bytes"


def test_list_bounds_and_items():
    """A list field checks its length and each item, naming the item's index."""
    field = Field("members", "list", max_len=2, min_len=1, item=Username())
    assert field.check(["Bob", "carol"]) == ["bob", "carol"]
    assert bad(field.check, "bob") == "members must be a list"
    assert bad(field.check, []) == "members must have at least 1 items"
    assert bad(field.check, ["a", "b", "c"]) == "members must have at most 2 items"
    assert bad(field.check, ["ok", "not ok"]) == "members[1] has characters that are not allowed"


def test_list_without_item_schema_is_copied():
    """A list without an item schema is returned as a new list."""
    raw = (1, "x")
    assert Field("things", "list").check(raw) == [1, "x"]


def test_map_field():
    """A map field accepts a dict and refuses a list."""
    assert Field("extra", "map").check({"a": 1}) == {"a": 1}
    assert bad(Field("extra", "map").check, [1]) == "extra must be a map"


# -- Op.validate -----------------------------------------------------------------------------


def test_missing_required_field_is_named():
    """A missing required argument gives bad_request naming it."""
    assert bad(OPS["room.join"].validate, {}) == "room_id is required"
    assert bad(OPS["msg.send"].validate, {"room_id": 1, "body": "x"}) == \
        "client_msg_id is required"


def test_null_counts_as_missing():
    """A nil value is treated as absent: required → bad_request, optional → default."""
    assert bad(OPS["room.join"].validate, {"room_id": None}) == "room_id is required"
    clean = OPS["msg.history"].validate({"room_id": 5, "limit": None})
    assert clean["limit"] == 50


def test_unknown_keys_are_ignored():
    """Keys the schema does not declare are dropped, not refused (PROTOCOL.md 2)."""
    clean = OPS["room.join"].validate({"room_id": 7, "future_flag": True, "x": [1]})
    assert clean == {"room_id": 7}


def test_optional_fields_get_their_defaults():
    """Absent optional fields are present in the result with their default."""
    clean = OPS["room.create"].validate({"name": "general", "visibility": "public"})
    assert clean == {"name": "general", "topic": "", "visibility": "public", "members": None}


def test_args_must_be_a_map():
    """``args`` that is not a map is bad_request; absent args count as empty."""
    assert bad(OPS["room.join"].validate, [1, 2]) == "args must be a map"
    assert OPS["session.ping"].validate(None) == {}


def test_validation_reports_the_first_bad_field_in_schema_order():
    """With several bad fields, the first one declared is named."""
    message = bad(OPS["msg.react"].validate, {"room_id": "x", "msg_id": "y", "on": 1})
    assert message == "room_id must be an integer"


def test_history_limit_is_capped():
    """msg.history refuses a limit over the protocol's 200."""
    assert "limit must be at most 200" in bad(
        OPS["msg.history"].validate, {"room_id": 1, "limit": MAX_HISTORY_LIMIT + 1})


def test_message_body_bound():
    """msg.send refuses a body over MAX_BODY characters."""
    args = {"room_id": 1, "body": "x" * (MAX_BODY + 1), "client_msg_id": "c"}
    assert bad(OPS["msg.send"].validate, args) == f"body must be at most {MAX_BODY} characters"


def test_ttl_bounds():
    """ttl is 1-86400 seconds (PROTOCOL.md 6)."""
    base = {"room_id": 1, "body": "x", "client_msg_id": "c"}
    assert OPS["msg.send"].validate({**base, "ttl": 86400})["ttl"] == 86400
    assert "ttl" in bad(OPS["msg.send"].validate, {**base, "ttl": 0})
    assert "ttl" in bad(OPS["msg.send"].validate, {**base, "ttl": 86401})


@pytest.mark.parametrize("emoji", ["👍", "👍🏽", "🇫🇷", "👨\u200d👩\u200d👧", "1️⃣", "❤️", "🏳️\u200d🌈",
                                   "🧑🏽\u200d🤝\u200d🧑🏻", "🫠"])
def test_react_accepts_one_emoji_of_any_kind(emoji):
    """msg.react takes one emoji: plain, skin-toned, a flag, a ZWJ sequence, a keycap."""
    args = {"room_id": 1, "msg_id": 2, "emoji": emoji, "on": True}
    assert OPS["msg.react"].validate(args)["emoji"] == emoji


def test_react_stores_the_fully_qualified_spelling():
    """An unqualified emoji (no variation selector) becomes its fully qualified form,
    so both spellings are one reaction."""
    for typed, stored in (("❤", "❤️"), ("1⃣", "1️⃣"), ("☺", "☺️")):
        args = {"room_id": 1, "msg_id": 2, "emoji": typed, "on": True}
        assert OPS["msg.react"].validate(args)["emoji"] == stored


@pytest.mark.parametrize("text", ["abc", "👍👍", "", "1", "#", "a", "\x00", "👍\n", "\u200d",
                                  "🏽", "🇫", "👍 ", "x" * 32, "\u202e👍"])
def test_react_refuses_anything_but_one_emoji(text):
    """Text, several emoji, nothing, control characters, bare digits and lone emoji
    components are bad_request naming emoji."""
    args = {"room_id": 1, "msg_id": 2, "emoji": text, "on": True}
    assert bad(OPS["msg.react"].validate, args).startswith("emoji ")


# -- the registry ----------------------------------------------------------------------------

_PERSPECTIVES = {
    "accounts": AccountPerspective,
    "users": UserPerspective,
    "rooms": RoomPerspective,
    "messages": MessagePerspective,
    "files": FilePerspective,
    "calls": CallPerspective,
    "feed": FeedPerspective,
    "admin": AdminPerspective,
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_points_at_a_method_taking_exactly_its_arguments(name):
    """Each registered op names an existing ``perspective_*`` (or ``mind_*``) method
    whose parameters are exactly the op's declared fields."""
    op: Op = OPS[name]
    assert op.name == name
    if op.perspective == "mind":
        method = getattr(ChatServerProtocol, "mind_" + op.method)
    else:
        method = getattr(_PERSPECTIVES[op.perspective], "perspective_" + op.method)
    params = [p for p in inspect.signature(method).parameters if p != "self"]
    assert params == [f.name for f in op.args]


def test_only_session_and_auth_ops_are_allowed_before_login():
    """The pre-login ops are exactly those of PROTOCOL.md 3.2."""
    before = {name for name, op in OPS.items() if op.before_login}
    assert before == {"session.hello", "session.ping", "auth.register", "auth.login",
                      "auth.resume"}


def test_the_only_notifications_are_typing_and_call_audio():
    """msg.typing (section 6) and call.audio (section 8) are the notifications."""
    assert sorted(name for name, op in OPS.items() if op.notification) == \
        ["call.audio", "msg.typing"]


def test_protocol_sections_3_to_6_are_all_registered():
    """Every op of PROTOCOL.md sections 3-6 is in the registry."""
    expected = {
        "session.hello", "session.ping", "auth.register", "auth.login", "auth.resume",
        "auth.logout", "auth.change_password",
        "user.get", "user.update", "user.search", "presence.set", "contact.request",
        "contact.respond", "contact.remove", "contact.list",
        "room.create", "dm.open", "room.directory", "room.list", "room.join", "room.leave",
        "room.invite", "room.kick", "room.members", "room.update", "room.set_role",
        "room.delete",
        "msg.send", "msg.edit", "msg.delete", "msg.react", "msg.history", "msg.read",
        "msg.typing", "msg.search",
    }
    assert expected <= set(OPS)


# -- text rules (finding 12: names accepted NUL and U+202E) ---------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x07", "\n", "\u202e", "\u2066", "\u200f",
                                  "\u2028", "\x85"])
def test_one_line_text_refuses_control_and_bidi_characters(char):
    """Room names, display names and other one-line text refuse control characters,
    line separators and the bidirectional overrides that let one name pose as
    another, naming the field and the character."""
    message = bad(OPS["room.create"].validate,
                  {"name": f"pay{char}roll", "visibility": "public"})
    assert message == f"name must not contain the character U+{ord(char):04X}"
    assert bad(OPS["user.update"].validate, {"display_name": f"ad{char}min"}).startswith(
        "display_name must not contain")


def test_one_line_text_keeps_joiners_and_is_stripped():
    """Zero-width joiners stay (emoji sequences, Indic and Persian scripts need them);
    surrounding white space is stripped, so a blank name is empty."""
    args = OPS["room.create"].validate({"name": "  family 👨\u200d👩\u200d👧 ",
                                        "visibility": "public"})
    assert args["name"] == "family 👨\u200d👩\u200d👧"
    assert bad(OPS["room.create"].validate, {"name": "   ", "visibility": "public"}) == (
        "name must not be empty")


def test_topics_may_span_lines_but_refuse_other_controls():
    """A topic may hold newlines and tabs, nothing else of the kind."""
    args = OPS["room.update"].validate({"room_id": 1, "topic": "line one\n\tline two"})
    assert args["topic"] == "line one\n\tline two"
    assert bad(OPS["room.update"].validate, {"room_id": 1, "topic": "a\u202eb"}).startswith(
        "topic must not contain")


def test_message_bodies_refuse_nul_but_keep_text_as_sent():
    """A body keeps newlines, tabs, surrounding spaces and right-to-left marks
    (legitimate in mixed-script text) but refuses NUL and other controls."""
    args = OPS["msg.send"].validate({"room_id": 1, "client_msg_id": "c1",
                                     "body": "  שלום\u200f world\r\n\t"})
    assert args["body"] == "  שלום\u200f world\r\n\t"
    assert bad(OPS["msg.send"].validate, {"room_id": 1, "client_msg_id": "c1",
                                          "body": "a\x00b"}) == (
        "body must not contain the character U+0000")


def test_passwords_may_hold_any_character():
    """Passwords are not text for people to read: every character is allowed."""
    args = OPS["auth.login"].validate({"username": "alice", "password": " \x00\u202e "})
    assert args["password"] == " \x00\u202e "


def test_only_notifications_may_omit_the_id():
    """The registry marks which ops are notifications; msg.typing is one, msg.send not."""
    assert OPS["msg.typing"].notification
    assert not OPS["msg.send"].notification and not OPS["file.download"].notification


def test_budgeted_ops_name_a_known_budget():
    """Every op's budget exists in chatnet.wire.limits.BUDGETS; expensive reads and
    bulk starts have one."""
    from chatnet.wire.limits import BUDGETS

    for op in OPS.values():
        assert op.budget is None or op.budget in BUDGETS, op.name
    for name in ("msg.history", "msg.changes", "msg.search", "room.list", "room.members"):
        assert OPS[name].budget == "expensive", name
    assert OPS["file.upload.begin"].budget == "uploads"
    for name in ("msg.react", "msg.edit", "msg.delete"):
        assert OPS[name].budget == "changes", name
    create = OPS["room.create"]
    assert create.budget == "rooms" and OPS["room.invite"].budget == "rooms"
    assert create.budget_units({"members": []}) == 1
    assert create.budget_units({"members": [f"u{i}" for i in range(500)]}) == 11
    download = OPS["file.download"]
    assert download.budget_units({"offset": 0}) == 1
    assert download.budget_units({"offset": 262144}) == 0
