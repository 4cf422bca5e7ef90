"""The one exception type for bad user input.

Library functions raise :class:`InputError` with a one-line message naming the file,
argument or value that was wrong and what was expected. The CLI turns it into that line
on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a missing file, a wrong shape, an unknown option."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)
