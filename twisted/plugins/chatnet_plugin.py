"""twistd plugin for the chatnet server: ``twistd -n chatnet --help``.

Kept to a single ``ServiceMaker``: twistd imports every plugin module on each
``twistd --help``, so this file must not import chatnet itself. The options
and the service live in :mod:`chatnet.tap`.
"""

from twisted.application.service import ServiceMaker

chatnet = ServiceMaker(
    "chatnet",
    "chatnet.tap",
    "chatnet: self-hosted TLS chat server (PROTOCOL.md version 1)",
    "chatnet",
)
