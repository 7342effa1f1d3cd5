"""Request bodies of the service (pydantic v2; they make the published OpenAPI schema).

Numbers are bounded so that hostile input cannot overflow the camera math: matrix entries
|x| ≤ 1e8, focal lengths ≤ 1e8 px, lens ≤ 1e5 mm and so on. NaN/inf are rejected.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e8, le=1e8)]
Positive = Annotated[float, Field(allow_inf_nan=False, gt=0, le=1e8)]
Row4 = Annotated[list[Finite], Field(min_length=4, max_length=4)]
Matrix4 = Annotated[list[Row4], Field(min_length=4, max_length=4,
                                      description="4×4 row-major matrix (list of 4 rows)")]
Name = Annotated[str, Field(max_length=256)]


class CameraSpec(BaseModel):
    """A pinhole camera in ``exgs.cameras.Camera.to_dict()`` form: OpenCV axes (x right,
    y down, z forward), ``world_to_camera`` maps scene-frame points to camera space;
    intrinsics in pixels."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(ge=1, le=65536)
    height: int = Field(ge=1, le=65536)
    fx: Positive
    fy: Positive
    cx: Finite
    cy: Finite
    world_to_camera: Matrix4
    name: Name = ""
    near: Positive = 0.01
    far: Annotated[float, Field(gt=0, le=1e30, allow_inf_nan=False)] = 1e10


class BlenderCameraSpec(BaseModel):
    """The raw numbers of a Blender perspective camera (keyword arguments of
    ``exgs.cameras.camera_from_blender``); all the camera math happens in the backend.
    ``object_matrix_world`` is the splat object's ``matrix_world`` (identity if omitted)."""

    model_config = ConfigDict(extra="forbid")
    camera_matrix_world: Matrix4
    lens: Annotated[float, Field(gt=0, le=1e5, allow_inf_nan=False)] = Field(
        description="focal length, mm")
    sensor_width: Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)] = 36.0
    sensor_height: Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)] = 24.0
    sensor_fit: Literal["AUTO", "HORIZONTAL", "VERTICAL"] = "AUTO"
    shift_x: Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)] = 0.0
    shift_y: Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)] = 0.0
    resolution_x: int = Field(1920, ge=1, le=65536)
    resolution_y: int = Field(1080, ge=1, le=65536)
    resolution_percentage: int = Field(100, ge=1, le=10000)
    pixel_aspect_x: Annotated[float, Field(ge=1e-3, le=1e3, allow_inf_nan=False)] = 1.0
    pixel_aspect_y: Annotated[float, Field(ge=1e-3, le=1e3, allow_inf_nan=False)] = 1.0
    object_matrix_world: Optional[Matrix4] = None
    clip_start: Annotated[float, Field(gt=0, le=1e8, allow_inf_nan=False)] = 0.01
    clip_end: Annotated[float, Field(gt=0, le=1e30, allow_inf_nan=False)] = 1e10
    name: Name = ""


AnyCamera = Union[CameraSpec, BlenderCameraSpec]


class ErrorBody(BaseModel):
    """Every error answer: one line, and details when there are any."""

    error: str
    detail: Optional[Union[dict, list]] = None


class OpenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096,
                      description="file or SOG folder inside the server's --allow-dir")


class CompressRequest(BaseModel):
    """UGC compression. Give ``ratio`` (target source size / .exgs size) or ``keep``
    (a fraction in (0, 1] of the Gaussians, or a count ≥ 1 when an integer), not both;
    neither keeps 10 %."""

    model_config = ConfigDict(extra="forbid")
    ratio: Optional[Annotated[float, Field(ge=1, le=1e6, allow_inf_nan=False)]] = None
    keep: Optional[Union[Annotated[int, Field(ge=1)],
                         Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]]] = None
    sh_degree: int = Field(0, ge=0, le=3)
    cameras: Optional[Annotated[list[AnyCamera], Field(max_length=4096)]] = Field(
        None, description="training/significance views (default: chosen by the compressor)")
    shot: Optional[Annotated[list[AnyCamera], Field(max_length=4096)]] = Field(
        None, description="the cameras the file will be rendered from (a camera path): scored "
                          "and refined as well, and the painter is judged on their frames "
                          "(at most 32 used, evenly spread)")
    adapt: Optional[Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]] = Field(
        None, description="seconds to fine-tune a per-scene GaussPainter delta stored in the "
                          ".exgs (counted in the ratio; left out when it does not pay)")
    adapt_form: Optional[Literal["auto", "last", "head", "lora", "bias", "detail"]] = Field(
        None, description="form of the delta (default auto: the best of last/head/detail "
                          "that fits the budget)")
    adapt_min_gain: Optional[Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]] = \
        Field(None, description="keep the delta only if it gains at least this many dB on "
                                "held-out views (default: the compressor's rule)")
    refine: Optional[Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]] = Field(
        None, description="seconds to distil the survivors against the full scene's renders "
                          "(no extra bytes; kept only if better on held-out views; cancelling "
                          "the job stops it)")


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cameras: Annotated[list[AnyCamera], Field(min_length=1, max_length=10_000,
                                             description="at most 10,000 (and --max-frames)")]
    size: Optional[Annotated[list[Annotated[int, Field(ge=1, le=65536)]],
                             Field(min_length=2, max_length=2)]] = Field(
        None, description="[width, height] overriding every camera's size (intrinsics scaled)")
    background: Annotated[list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]],
                          Field(min_length=3, max_length=3)] = [0.0, 0.0, 0.0]
    restore: bool = Field(False, description="run GaussPainter on each frame")
    temporal: bool = Field(False, description="with restore: the cameras are a smooth path "
                                              "(an animation); stabilise the restored frames "
                                              "so they flicker no more than the unrestored ones")
    warmup: int = Field(0, ge=0, le=256,
                        description="with restore and temporal: the first `warmup` cameras are "
                                    "the frames before the wanted ones on the same path; they "
                                    "are restored and fed to the stabiliser but not returned, "
                                    "so a frame's output depends on the request only (not on "
                                    "what was rendered before)")
    restart: int = Field(0, ge=0, le=256,
                         description="with warmup: a second stabiliser starts fresh at this "
                                     "camera index (≤ warmup) and the returned rgb is "
                                     "(1 − blend)·first + blend·second (cross-fading from one "
                                     "stabilised run to the next)")
    blend: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False,
                         description="weight of the run started at `restart`")
    linear: bool = Field(False, description="rgb as premultiplied scene-linear (straight "
                                            "colour clipped to [0, 1], sRGB decoded, × alpha: "
                                            "what Blender's Combined pass holds) instead of "
                                            "premultiplied display sRGB; with temporal, "
                                            "stabilised in that space (needs a black "
                                            "background)")
    use_delta: bool = Field(True, description="with restore: apply the scene's per-scene "
                                              "painter delta (one of its facts) when it has one")
    painter_delta: Optional[Annotated[str, Field(max_length=8 << 20)]] = Field(
        None, json_schema_extra={"deprecated": True},
        description="deprecated (prefer PUT /v1/scenes/{id}/facts, which stores it with the "
                    "scene once): with restore, a painter delta (base64) to apply instead of "
                    "the scene's own")
    keep: Optional[float] = Field(
        None, gt=0, le=1, allow_inf_nan=False, json_schema_extra={"deprecated": True},
        description="deprecated (prefer PUT /v1/scenes/{id}/facts): with restore, the kept "
                    "fraction of the original scene's Gaussians, overriding the scene's own "
                    "(sets how far GaussPainter's gate opens)")
    passes: Annotated[list[Literal["rgb", "alpha", "depth"]],
                      Field(min_length=1, max_length=3)] = ["rgb", "alpha", "depth"]
    format: Literal["f32", "png"] = "f32"
    sh_degree: Optional[int] = Field(None, ge=0, le=3)


class FactsRequest(BaseModel):
    """The facts of a compressed scene kept in another form (the Blender add-on uploads a
    PLY of a compressed scene): stored with the scene and used by every render."""

    model_config = ConfigDict(extra="forbid")
    kept_fraction: Optional[float] = Field(
        None, gt=0, le=1, allow_inf_nan=False,
        description="kept / original Gaussians in (0, 1] (sets how far GaussPainter's gate "
                    "opens); null = unknown")
    painter_delta: Optional[Annotated[str, Field(max_length=8 << 20)]] = Field(
        None, description="the per-scene painter delta, base64 (the bytes of a .exgs "
                          "file's painter_delta section); null = none")
    refined: bool = Field(False, description="the Gaussians were refined after pruning (a "
                                             ".exgs header's refine record; GaussPainter "
                                             "then uses its refined gate table)")
