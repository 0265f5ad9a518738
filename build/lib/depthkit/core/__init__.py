"""Shared plumbing under every layer: user errors, atomic writes, progress, pictures, devices.

Only torch-free pieces are re-exported here, so importing a light layer (source, shard) never
pulls in torch; `depthkit.core.dist` and `depthkit.core.normalization` are imported directly.
"""

from depthkit.core.atomic import atomic_file, write_atomic
from depthkit.core.errors import DepthkitError

__all__ = ["DepthkitError", "atomic_file", "write_atomic"]
