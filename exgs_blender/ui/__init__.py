"""The "ExGS" sidebar panel (3D Viewport ▸ N panel)."""

from .panel import classes  # noqa: F401
