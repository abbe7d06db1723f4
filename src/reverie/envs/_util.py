"""Helpers shared by the suite modules: lazy optional imports with an install hint."""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from reverie.envs.gym_suite import EnvIdError


class SuiteNotInstalledError(EnvIdError):
    """A suite's optional package is missing; the message names the pip extra."""


def require(module: str, extra: str, suite: str, note: str = "") -> ModuleType:
    """Import `module` or fail with one line naming `pip install -e .[extra]`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = f" {note}" if note else ""
        raise SuiteNotInstalledError(
            f"the {suite!r} suite needs the package {module!r} ({e}); install it with "
            f"`pip install -e .[{extra}]`{hint}"
        ) from None


def unknown_task(suite: str, task: str, known: list[str]) -> EnvIdError:
    close = difflib.get_close_matches(task, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(f'{suite}:{c}' for c in close)}?" if close else ""
    return EnvIdError(f"unknown {suite} task {task!r}{hint}")
