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
    "own_model",
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
        add_completion=False,
        no_args_is_help=True,
        help="Trustworthy deep learning: train, explain, attack, audit.",
        suggest_commands=False,  # click already suggests the closest command, once
    )
    for name in COMMANDS:
        importlib.import_module(f"trusttango.cli.{name}").register(app)
    return app


app = build_app()


def main() -> None:
    """Entry point: run the app; bad input (also a usage error) -> one line on stderr, exit
    status 2; Ctrl-C -> one line, exit status 130."""
    import click

    try:
        code = app(standalone_mode=False, prog_name="trusttango")
    except InputError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("interrupted", highlight=False)
        sys.exit(130)
    except click.UsageError as err:  # unknown options, a missing argument, the old positional data
        console.print(f"[red]error:[/red] {err.format_message()}{_old_form_hint(err)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    if code == 130:  # Typer returns Ctrl-C as status 130 outside standalone mode
        console.print("interrupted", highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


def _old_form_hint(err) -> str:
    """For a command that takes ``--data``, an extra positional argument is the old DATA form:
    name the new one."""
    ctx, message = err.ctx, err.format_message()
    if ctx is None or "unexpected extra argument" not in message:
        return ""
    if not any(param.name == "data" for param in ctx.command.params):
        return ""
    extra = message.rsplit("(", 1)[-1].rstrip(")")
    return f"; data is an option: {ctx.command_path} MODEL --data {extra}"
