"""Widgets and delegates of the desktop client: they lay out, paint and emit intents.

No module here calls the network or storage; what the user asks for leaves a
view as a Qt signal that :mod:`qtclient.app` connects to the controller.
"""
