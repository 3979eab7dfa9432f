"""The wire: frames, the op registry, the server protocol and TLS (PROTOCOL.md 1-3)."""
