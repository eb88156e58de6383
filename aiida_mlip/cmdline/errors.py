"""How ``aiida-mlip`` reports errors: one clear line, a traceback only with ``-v debug``.

Every command of ``aiida-mlip`` (and of the ``verdi data mlip.*`` groups) runs inside
:class:`MlipCommandGroup`, which turns an exception that escapes a command into one line on standard
error (``Critical: <message>``) and exit status 1. ``-v debug`` (``--verbosity debug``) lets the
exception through, with its traceback. Commands raise ``click.BadParameter`` or ``click.UsageError``
themselves where they can name the option or argument at fault.
"""

from __future__ import annotations

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.utils import echo

__all__ = ("MlipCommandGroup", "debugging", "one_line", "run_refusing", "set_input", "validation_message")

#: Exceptions whose message is the whole story; others are prefixed with their type.
EXPECTED = (ValueError, KeyError, OSError, LookupError)


def one_line(exception: BaseException) -> str:
    """The message of ``exception`` on one line (whitespace runs collapsed; type name when empty)."""
    from aiida.common import exceptions

    message = " ".join(str(exception).split())
    if isinstance(exception, KeyError) and len(exception.args) == 1:
        message = str(exception.args[0])
    if not message:
        return f"{type(exception).__name__} with no message"
    if isinstance(exception, (*EXPECTED, exceptions.AiidaException)):
        return message
    return f"{type(exception).__name__}: {message}"


def validation_message(exception: ValueError) -> str | None:
    """The message of an input refused at submission, or ``None`` for any other ``ValueError``.

    AiiDA words a refused input ``Error occurred validating port 'inputs.trust': <why>``; this gives
    ``input `trust`: <why>`` (just ``<why>`` for the validator of all inputs together).
    """
    import re

    match = re.match(r"Error occurred validating port '([^']*)': (.*)", one_line(exception), re.DOTALL)
    if match is None:
        return None
    port, why = match.groups()
    port = port.removeprefix("inputs").lstrip(".")
    return f"input `{port}`: {why}" if port else why


def set_input(namespace, port: str, value, source: str = "") -> None:
    """Set ``namespace.<port>``; a refusal of the port's validator ends the command in one line.

    ``source`` is appended to the message (e.g. the file the value came from).
    """
    try:  # a port's own validator runs when the builder is given the value
        setattr(namespace, port, value)
    except ValueError as exception:
        if debugging():
            raise
        why = one_line(exception).removeprefix("invalid attribute value ")
        echo.echo_critical(f"refused: input `{port}`: {why}{source}")


def run_refusing(builder, source: str = ""):
    """Run ``builder`` here (in the foreground) and return its node after one line on how it ended.

    Inputs refused by the validators of the whole input namespace end the command in one line,
    before anything runs; ``source`` is appended to that message.
    """
    from aiida_mlip.foreground import run_get_node

    try:
        _, node = run_get_node(builder)
    except ValueError as exception:
        message = validation_message(exception)
        if debugging() or message is None:
            raise
        echo.echo_critical(f"refused: {message}{source}")
    state = node.process_state.value if node.process_state else "?"
    ending = f", exit {node.exit_status} {node.exit_message or ''}".rstrip() if node.exit_status else ""
    echo.echo(f"{node.process_label}<{node.pk}>: {state}{ending}")
    return node


def debugging() -> bool:
    """Whether the command runs with ``-v debug``."""
    from aiida.common import log

    return (log.CLI_LOG_LEVEL or "").upper() == "DEBUG"


class MlipCommandGroup(VerdiCommandGroup):
    """``VerdiCommandGroup`` whose commands report an escaped exception as one line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exception:
            if debugging():
                raise
            echo.echo_critical(f"{one_line(exception)} (run with -v debug for the traceback)")
