"""Bearer-token authentication for the service.

The token is 32 random bytes (``secrets.token_urlsafe``), either read from ``--token-file``
(when the file exists and is not empty) or generated at start and written to that file with
0600 permissions (created with ``O_EXCL`` under a temporary name, then renamed). Every request
must send ``Authorization: Bearer <token>``; the comparison is constant-time
(:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path

from ..errors import UsageError

#: Smallest accepted token length (characters) for a token given in a file.
MIN_TOKEN_CHARS = 16


def generate_token() -> str:
    return secrets.token_urlsafe(32)


def write_token_file(path: str | os.PathLike, token: str) -> None:
    """Write ``token`` to ``path`` readable by the owner only (0600), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        os.fchmod(fd, 0o600) if hasattr(os, "fchmod") else None
        os.write(fd, (token + "\n").encode("ascii"))
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_or_create_token(path: str | os.PathLike | None) -> tuple[str, str]:
    """(token, token file path). Reads ``path`` if it holds a token, otherwise generates one
    and writes it there (or to a fresh private temporary folder when ``path`` is None)."""
    if path is None:
        folder = tempfile.mkdtemp(prefix="exgs-serve-token-")  # 0700
        path = os.path.join(folder, "token")
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        try:
            text = Path(path).read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: cannot read the token file ({e})") from None
        if text:
            if len(text) < MIN_TOKEN_CHARS or any(c.isspace() for c in text):
                raise UsageError(f"{path}: token must be one line of at least "
                                 f"{MIN_TOKEN_CHARS} characters without spaces")
            return text, path
    elif os.path.exists(path):
        raise UsageError(f"{path}: token file is not a regular file")
    token = generate_token()
    write_token_file(path, token)
    return token, path


def check_bearer(header: str | None, token: str) -> bool:
    """True when ``header`` is ``Bearer <token>`` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "replace"), token.encode("utf-8"))
