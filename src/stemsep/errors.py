"""The one exception type the CLI turns into a one-sentence message."""


class StemsepError(Exception):
    """A problem the user can act on; ``str(error)`` is the whole message."""


def describe(error: BaseException) -> str:
    """One line for a batch report: our message as it is, anything else with its type in front."""
    return str(error) if isinstance(error, StemsepError) else f"{type(error).__name__}: {error}"
