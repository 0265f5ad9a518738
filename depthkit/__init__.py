"""depthkit: train mask + depth models on large composite image sets, fast.

Data flow: layout (original folders/zip/7z) -> shards (WebDataset tars) -> pipeline (DALI)
-> model -> train -> eval.
"""

__version__ = "0.1.0"
