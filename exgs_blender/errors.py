"""The add-on's errors and the one rule for showing any error: one line, no class name, no
traceback (stdlib only).

Every message the add-on reports goes through :func:`describe`; errors raised by the add-on
are :class:`ExgsError` subclasses whose text is already phrased for the user.
"""

from __future__ import annotations

__all__ = ["ExgsError", "BackendError", "RenderError", "ImportFailed", "Cancelled",
           "is_cancel", "describe"]


class ExgsError(Exception):
    """An add-on error already phrased for the user (one line)."""


class BackendError(ExgsError):
    """A backend problem (not installed, cannot start, refused, failed)."""


class RenderError(ExgsError):
    """A scene that cannot be rendered as it is (no camera, orthographic camera, ...)."""


class ImportFailed(ExgsError):
    """A scene file that cannot be imported (``path: problem``)."""


class Cancelled(ExgsError):
    """The user cancelled (Esc, or Blender aborted the render)."""


def is_cancel(e: BaseException) -> bool:
    """A user cancel (ours or the client's JobCancelled)."""
    if isinstance(e, Cancelled):
        return True
    from .client import JobCancelled
    return isinstance(e, JobCancelled)


def _one_line(text) -> str:
    return " ".join(str(text).split())


def describe(e: BaseException) -> str:
    """One line for any exception: ours and the client's as they are, OS errors as
    ``path: reason``, anything else as its message (never ``ClassName: ...``)."""
    from .client import AuthError, ExgsClientError

    msg = _one_line(e)
    if isinstance(e, AuthError):
        return msg or "the ExGS backend rejected the token"
    if isinstance(e, (ExgsError, ExgsClientError)):
        return msg or "ExGS backend error"
    if isinstance(e, ConnectionRefusedError):
        return f"backend not reachable ({_one_line(e.strerror or msg)})"
    if isinstance(e, OSError):
        reason = _one_line(e.strerror or msg) or "input/output error"
        return f"{e.filename}: {reason}" if e.filename else reason
    if isinstance(e, MemoryError):
        return "out of memory"
    if isinstance(e, KeyError):  # str(KeyError('x')) is "'x'": say what it is
        return f"missing entry {msg}"
    return msg or "unexpected error (see the system console)"
