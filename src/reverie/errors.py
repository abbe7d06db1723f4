"""The errors meant for the user: one base class, so that the CLI can tell them from bugs.

Each keeps the builtin base it had (ValueError, RuntimeError, ...) too, so that code written
against those (`except ValueError`) still catches it.
"""

from __future__ import annotations


class ReverieError(Exception):
    """An error whose cause is the user's input or environment: a bad flag, config key,
    env, file, a full disk, a missing optional package.

    Its message says what is wrong and how to fix it, and the CLI prints it as one
    `reverie: error:` line. Any other exception is a bug and keeps its traceback, which is
    why this is a class of its own rather than a list of builtin types (a FileNotFoundError
    from a bug would read as the user's fault).
    """


class NoCheckpointError(ReverieError, FileNotFoundError):
    """A logdir (or path) without a checkpoint, given where one is needed (eval, export...)."""


class MissingExtraError(ReverieError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it
    (`install_command`), since the package name alone does not say which extra pins it."""


def install_command(extra: str) -> str:
    """How to install an optional extra, as the docs install reverie (from a clone)."""
    return f"pip install -e '.[{extra}]'"
