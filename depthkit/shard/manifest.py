"""Reading a shard folder's manifest.json (written by `depthkit shard`).

Structure (all paths relative to the shard root)::

    {
      "format": "depthkit-shards", "version": 1,
      "depthkit_version": "0.1.0", "created": "2026-11-30T14:00:00Z",
      "source": ["/data/school"],                  # what was sharded
      "resolutions": [64, 224],
      "split": {"method": "random", "val_fraction": 0.1, "seed": 0},
      "counts": {"train": 144, "val": 16, "rejected": 0},
      "backgrounds": [1, 2, 102],                  # background ids present
      "stats": {                                   # per channel, on the [0, 1] scale
        "bg": {"mean": [r, g, b], "std": [r, g, b]},
        "fgbg": {"mean": [...], "std": [...]},
        "mask": {"mean": [m], "std": [s]},
        "depth": {"mean": [m], "std": [s]}
      },
      "files": {
        "224": {
          "backgrounds": {"tar": "224/backgrounds.tar", "index": "224/backgrounds.idx",
                          "samples": 4, "bytes": 123, "sha256": "..."},
          "train": [{"tar": "224/train-000000.tar", "index": "224/train-000000.idx",
                     "samples": 144, "bytes": 456, "sha256": "..."}],
          "val": [...]
        }
      },
      "rejects": {"count": 0, "by_reason": {}, "file": "rejects.jsonl"}
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from depthkit.core.errors import DepthkitError
from depthkit.shard.schema import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME

Manifest = dict[str, Any]


def load_manifest(root: Path) -> Manifest:
    """Read and sanity-check `root/manifest.json`; one-line DepthkitError if unusable."""
    root = Path(root)
    if not root.is_dir():
        raise DepthkitError(f"shard folder not found: {root}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DepthkitError(f"no {MANIFEST_NAME} in {root} (run `depthkit shard` first)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DepthkitError(f"unreadable manifest {path}: {err}") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise DepthkitError(
            f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})"
        )
    return manifest


def resolutions(manifest: Manifest) -> list[int]:
    """Resolutions the shard folder holds, ascending."""
    return sorted(int(r) for r in manifest["files"])


def split_files(manifest: Manifest, res: int, split: str) -> list[dict[str, Any]]:
    """The shard entries (tar, index, samples, ...) of one split at one resolution."""
    files = manifest["files"].get(str(int(res)))
    if files is None:
        have = ", ".join(str(r) for r in resolutions(manifest)) or "none"
        raise DepthkitError(
            f"shards hold no {res} px copy (have: {have}); "
            f"rerun `depthkit shard ... --res {res}`"
        )
    if split not in files:
        raise DepthkitError(f"shards hold no '{split}' split at {res} px")
    return list(files[split])


def background_file(manifest: Manifest, res: int) -> dict[str, Any]:
    """The backgrounds.tar entry at one resolution."""
    split_files(manifest, res, "train")  # raises the same clear error if res is missing
    return dict(manifest["files"][str(int(res))]["backgrounds"])


def split_count(manifest: Manifest, split: str) -> int:
    """Number of samples in a split (the same at every resolution)."""
    return int(manifest["counts"][split])
