"""Sub-commands of ``exgs``: each module defines ``register(subparsers)``; the parser it adds
sets ``func=callable(args) -> int``. Shared argument helpers live in :mod:`._common`."""
