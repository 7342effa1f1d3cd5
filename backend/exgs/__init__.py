"""ExGS: extreme 3D Gaussian Splatting compression (UGC + GaussPainter) for Blender.

Subpackages: :mod:`exgs.scene` (the scene model), :mod:`exgs.io` (file formats),
:mod:`exgs.cameras` (camera model), :mod:`exgs.render` (CPU / gsplat renderer),
:mod:`exgs.ugc` (compression), :mod:`exgs.painter` (GaussPainter), :mod:`exgs.service`.
"""

import os as _os

# OpenMP threads (torch, numba) busy-wait after each parallel region by default. On a small
# machine shared with Blender or another job that oversubscribes the cores, and spinning
# threads then steal the CPU from the threads doing work: a painter training step measured
# 15–36 s with active waiting vs 2.7 s passive on 2 shared cores. Set before torch/numba load
# (exgs is imported first); an explicit OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
