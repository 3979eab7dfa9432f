"""Helpers shared by chatnet's tests: a real server in-process, real clients."""
