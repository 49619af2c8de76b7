"""The one exception type for problems a user can fix."""


class VidstyleError(Exception):
    """A user-facing error: its message is one line that says what went wrong.

    The command line prints it as ``error: <message>`` and exits with code 2;
    anything else escaping the library is a bug.
    """


class IncompleteInput(VidstyleError):
    """The input ended early (truncated or corrupt); what could be decoded was written."""
