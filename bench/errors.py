"""Errors a user can cause; the CLI turns them into one line and exit code 2."""


class BenchError(Exception):
    """A problem with the user's input, data or environment, with a message saying what to do."""
