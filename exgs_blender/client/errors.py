"""The client's exceptions: every failure of the client is one of these, and ``str(e)`` is
one line for the user (no class name, no traceback)."""

from __future__ import annotations

__all__ = ["ExgsClientError", "BackendUnavailable", "ServerGone", "AuthError", "BackendError",
           "JobFailed", "JobCancelled", "one_line"]


class ExgsClientError(Exception):
    """Base of every error this client raises; ``str(e)`` is one line for the user."""


class BackendUnavailable(ExgsClientError):
    """The backend cannot be reached (refused, timed out) or could not be started."""


class ServerGone(BackendUnavailable):
    """The backend stopped answering while a job was running (killed, crashed, network)."""


class AuthError(ExgsClientError):
    """The backend rejected the bearer token (HTTP 401)."""


class BackendError(ExgsClientError):
    """The backend answered with an error; ``message`` is its one-line explanation."""

    def __init__(self, status: int, message: str, detail=None):
        self.status, self.message, self.detail = int(status), message, detail
        super().__init__(f"{message} (HTTP {status})" if status else message)


class JobFailed(BackendError):
    """A job ended in state ``failed``; ``message`` is the server's error."""


class JobCancelled(ExgsClientError):
    """The job was cancelled (by this client's ``cancel`` or by someone else)."""



def one_line(text) -> str:
    """Any text → one line (runs of whitespace, newlines included, become one space)."""
    return " ".join(str(text).split())
