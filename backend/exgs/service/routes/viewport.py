"""Viewport routes: ``POST /v1/viewport`` (render a Blender 3D-view region now) and
``POST /v1/viewport/cancel`` — see :mod:`exgs.service.viewport`."""

from __future__ import annotations

from fastapi import APIRouter


def router(state) -> APIRouter:
    from ..viewport import ViewportRenderer, make_router

    engines = state.engines

    def restorer(obj, entry):
        """GaussPainter for one viewport object, as a render job would build it: the scene's
        facts, with the request's kept fraction / refined / painter delta (if sent) taking over."""
        import dataclasses

        from ...pipeline import RestoreOptions, SceneFacts, restorer_for
        from ..errors import ApiError
        from .scenes import decode_delta_b64

        facts = entry.facts or SceneFacts()
        if obj.painter_delta is not None:
            facts = dataclasses.replace(facts, painter_delta=decode_delta_b64(obj.painter_delta),
                                        delta_error=None)
        elif facts.delta_error:
            raise ApiError(400, facts.delta_error)
        options = RestoreOptions(device=engines.painters.device, kept_fraction=obj.keep,
                                 refined=obj.refined)
        return restorer_for(facts, options, cache=engines.painters)

    return make_router(ViewportRenderer(
        state.store, backend="gsplat" if state.device == "cuda" else "cpu",
        restorer=restorer, check_restore=engines.check_painter))
