"""The chatnet desktop client (PyQt6 on the Qt reactor)."""
