"""One-line messages without class names (issue 16): errors.describe for every kind of
failure the add-on meets (no bpy needed)."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from exgs_blender import client, errors  # noqa: E402  (stdlib only)

CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|_)\b:?|Traceback")


def _cases():
    return [
        errors.ImportFailed("/x/scene.ply: not a PLY file"),
        errors.BackendError("backend Python not found: /nope"),
        errors.RenderError("the scene has no active camera"),
        client.AuthError("the ExGS backend rejected the token (HTTP 401): check the token or "
                         "the token file"),
        client.BackendError(422, "cameras: field required"),
        client.JobFailed(0, "render failed:\nout of memory"),
        client.ServerGone("the ExGS backend at http://h:1 stopped responding during job j "
                          "(timed out)"),
        FileNotFoundError(2, "No such file or directory", "/x/y.exgs"),
        ConnectionRefusedError(111, "Connection refused"),
        KeyError("exgs_layout"),
        ValueError("bad value\nsecond line"),
        MemoryError(),
        RuntimeError(""),
    ]


def test_every_message_is_one_line_without_class_names():
    for e in _cases():
        msg = errors.describe(e)
        assert msg and "\n" not in msg, (e, msg)
        assert not CLASS_NAME.search(msg), (type(e).__name__, msg)


def test_messages_say_what_happened():
    d = errors.describe
    assert d(FileNotFoundError(2, "No such file or directory", "/x/y.exgs")) == \
        "/x/y.exgs: No such file or directory"
    assert d(ConnectionRefusedError(111, "Connection refused")).startswith("backend not reachable")
    assert "exgs_layout" in d(KeyError("exgs_layout"))
    assert d(client.BackendError(422, "cameras: field required")) == \
        "cameras: field required (HTTP 422)"
    tok = d(client.AuthError("the ExGS backend rejected the token (HTTP 401): check the token "
                             "or the token file"))
    assert tok.count("rejected the token") == 1  # one clear line, not nested
    assert errors.is_cancel(errors.Cancelled("x")) and errors.is_cancel(client.JobCancelled("x"))
    assert not errors.is_cancel(ValueError("x"))
