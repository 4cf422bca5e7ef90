"""``trusttango`` command line: thin Typer commands over the public library API.

One module per pillar in this package, each with a ``register(app)`` function listed in
:data:`COMMANDS`; shared helpers (model loading with its data check, comma lists, the console)
in :mod:`trusttango.cli._common`. Bad input (:class:`~trusttango.errors.InputError`) prints
one line and exits with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import importlib
import sys

import typer

from trusttango.cli._common import console
from trusttango.errors import InputError

COMMANDS: tuple[str, ...] = (
    "core",
    "automl",
    "explain",
    "robust",
    "detect",
    "privacy",
    "federated",
    "fairness",
    "report",
)


def build_app() -> typer.Typer:
    """A fresh Typer app with every command of :data:`COMMANDS` registered."""
    app = typer.Typer(
        add_completion=False, no_args_is_help=True, help="Trustworthy deep learning: train, explain, attack, audit."
    )
    for name in COMMANDS:
        importlib.import_module(f"trusttango.cli.{name}").register(app)
    return app


app = build_app()


def main() -> None:
    """Entry point: run the app; bad input -> one line on stderr, exit status 2."""
    import click

    try:
        code = app(standalone_mode=False)
    except InputError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("interrupted", highlight=False)
        sys.exit(130)
    except click.ClickException as err:  # usage errors carry their own exit code
        err.show()
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
