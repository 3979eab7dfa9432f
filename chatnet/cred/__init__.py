"""Identity through twisted.cred: checkers, credentials and the realm."""
