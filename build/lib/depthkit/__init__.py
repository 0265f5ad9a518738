"""depthkit: train mask + depth models on large composite image sets, fast.

Data flow: layout (original folders/zip/7z) -> shards (WebDataset tars) -> pipeline (DALI)
-> model -> train -> eval.
"""

from depthkit.core.version import __version__

__all__ = ["__version__"]
