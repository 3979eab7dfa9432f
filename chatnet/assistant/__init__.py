"""The assistant (PROTOCOL.md 11): a bot that answers with a language model.

The assistant is an ordinary account served by a bot that speaks the chat
protocol through the client library (:class:`chatnet.client.session.ChatSession`),
exactly as a person's client does. A direct message to it, or a room message
that mentions it, is answered in the same room, as a reply, by an
OpenAI-compatible chat-completions endpoint the operator chose:

1. :class:`~chatnet.assistant.bot.Assistant` sees a ``msg`` event and decides
   whether it is a question for it (never its own messages), and whether the
   asker is within their rate (:class:`~chatnet.assistant.bot.QuestionRate`).
2. :class:`~chatnet.assistant.reply.StreamedReply` sends a short placeholder
   (a reply to the question) and ``msg.typing``.
3. :class:`~chatnet.assistant.memory.ConversationMemory` gives the room's
   recent turns, bounded in messages and characters, as the prompt.
4. :class:`~chatnet.assistant.completions.ChatCompletions` posts it with
   ``"stream": true`` (treq) and reads the server-sent events
   (:class:`~chatnet.assistant.eventstream.EventStreamDecoder`) as they come.
5. The reply edits the placeholder as text arrives, paced to the server's
   per-user ``changes`` budget, splits answers longer than a message, and ends
   with an edit holding the whole answer, or an apology saying what failed.

:class:`~chatnet.assistant.service.AssistantService` runs all of it as a
Twisted service: inside the server (``twistd chatnet --assistant-url URL``,
see :mod:`chatnet.assistant.account` for its account) or on its own
(``twistd chatnet-assistant``, :mod:`chatnet.assistant.tap`). See
docs/assistant.md.

This package's ``__init__`` imports nothing, so that the server's configuration
can read :mod:`chatnet.assistant.config` without loading the HTTP client.
"""
