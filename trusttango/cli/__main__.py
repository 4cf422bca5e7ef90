"""``python -m trusttango.cli``: the same as the ``trusttango`` command."""

from trusttango.cli import main

main()
