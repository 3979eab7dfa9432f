"""twistd plugin for the chatnet assistant on its own: ``twistd -n chatnet-assistant --help``.

Kept to a single ``ServiceMaker`` (it is imported by every ``twistd --help``):
the options and the service live in :mod:`chatnet.assistant.tap`.
"""

from twisted.application.service import ServiceMaker

chatnet_assistant = ServiceMaker(
    "chatnet-assistant",
    "chatnet.assistant.tap",
    "chatnet-assistant: a bot answering chatnet messages with an OpenAI-compatible "
    "endpoint (PROTOCOL.md 11)",
    "chatnet-assistant",
)
