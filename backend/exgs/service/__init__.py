"""The ExGS job service: ``exgs serve`` (FastAPI + uvicorn) for the Blender add-on and farms.

:mod:`.app` (routes, errors), :mod:`.jobs` (worker threads, cancel), :mod:`.scenes`
(content-addressed scene store), :mod:`.auth` (bearer token), :mod:`.frames` (binary frame
format), :mod:`.models` (request schemas). The stdlib client lives in ``exgs_blender/client.py``.
"""
