"""The one exception type the CLI turns into a one-sentence message."""


class StemsepError(Exception):
    """A problem the user can act on; ``str(error)`` is the whole message."""
