"""Exceptions that reach the user as one clear line.

Every error the user can cause (a bad file, a wrong flag value, an unreachable backend) is an
:class:`ExgsError`. The CLI prints ``exgs: error: <message>`` and exits with code 2; it never
shows a traceback for these.
"""

from __future__ import annotations

import os


class ExgsError(Exception):
    """A problem the user can fix; ``str(err)`` is one line."""

    exit_code = 2


class SceneFormatError(ExgsError):
    """A scene or camera file that cannot be read: names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


class UsageError(ExgsError):
    """A bad option value or combination."""
