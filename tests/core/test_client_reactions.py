"""The client library's view of a message's reactions (chatnet/client/reactions.py):
listed or summarised, kept current by live msg.reaction events."""

from __future__ import annotations

from chatnet.client.reactions import Reactions


def listed(**reactions: list[str]) -> dict:
    return {"msg_id": 1, "reactions": {
        {"up": "👍", "heart": "❤️", "party": "🎉"}[k]: v for k, v in reactions.items()}}


SUMMARISED = {"msg_id": 1, "reaction_counts": {"👍": 1200, "❤️": 3, "🎉": 1},
              "my_reactions": ["❤️"], "reactions_summarised": True}


def test_a_listed_message_gives_counts_names_and_the_users_own():
    """{emoji: [username]} becomes (emoji, count, mine) in the server's order, with names."""
    reactions = Reactions.from_message(listed(up=["bob", "me"], heart=["carol"]), "me")
    assert reactions.chips() == [("👍", 2, True), ("❤️", 1, False)]
    assert reactions.users("👍") == ["bob", "me"] and reactions.users("🎉") == []
    assert not reactions.summarised and reactions.mine() == {"👍"}


def test_a_summarised_message_gives_counts_and_the_users_own_without_names():
    """reaction_counts/my_reactions become the same chips; names are unknown (None)."""
    reactions = Reactions.from_message(SUMMARISED, "me")
    assert reactions.summarised
    assert reactions.chips() == [("👍", 1200, False), ("❤️", 3, True), ("🎉", 1, False)]
    assert reactions.users("👍") is None and reactions.mine() == {"❤️"}


def test_live_events_keep_a_listed_message_current_without_double_counting():
    """Adding and removing names moves the counts; repeats change nothing; an emoji
    whose last user leaves disappears."""
    reactions = Reactions.from_message(listed(up=["bob"]), "me")
    assert reactions.apply("👍", "bob", True, "me") is False
    assert reactions.apply("👍", "me", True, "me") is True
    assert reactions.apply("🎉", "carol", True, "me") is True
    assert reactions.chips() == [("👍", 2, True), ("🎉", 1, False)]
    assert reactions.apply("👍", "bob", False, "me") is True
    assert reactions.apply("🎉", "carol", False, "me") is True
    assert reactions.apply("🎉", "carol", False, "me") is False
    assert reactions.chips() == [("👍", 1, True)]


def test_live_events_keep_a_summarised_message_current():
    """Others' events move the counts; the user's own are exact (a repeat changes
    nothing); a count that reaches zero removes the emoji; new emoji appear."""
    reactions = Reactions.from_message(SUMMARISED, "me")
    assert reactions.apply("👍", "bob", True, "me") is True
    assert reactions.apply("❤️", "me", True, "me") is False
    assert reactions.apply("👍", "me", True, "me") is True
    assert reactions.apply("🎉", "dave", False, "me") is True
    assert reactions.apply("😂", "eve", True, "me") is True
    assert reactions.chips() == [("👍", 1202, True), ("❤️", 3, True), ("😂", 1, False)]
    assert reactions.apply("❤️", "me", False, "me") is True
    assert reactions.chips()[1] == ("❤️", 2, False)
    assert reactions.users("😂") is None


def test_equal_when_they_show_the_same():
    """Two readings of the same message compare equal; a change makes them differ."""
    a, b = Reactions.from_message(SUMMARISED, "me"), Reactions.from_message(SUMMARISED, "me")
    assert a == b
    b.apply("👍", "bob", True, "me")
    assert a != b
    assert Reactions.from_message({"msg_id": 1}, "me") == Reactions()
    assert len(Reactions()) == 0
