"""ExGS: extreme 3D Gaussian Splatting compression (UGC + GaussPainter) for Blender.

Subpackages: :mod:`exgs.scene` (the scene model), :mod:`exgs.io` (file formats),
:mod:`exgs.cameras` (camera model), :mod:`exgs.render` (CPU / gsplat renderer),
:mod:`exgs.ugc` (compression), :mod:`exgs.painter` (GaussPainter), :mod:`exgs.service`.
"""

__version__ = "0.1.0"
