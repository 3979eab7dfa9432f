"""Command-line programs: the terminal client (``chatnet``) and ``chatnet-admin``."""
