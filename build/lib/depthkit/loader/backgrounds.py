"""The background bank: every background of one resolution decoded once, joined to samples by id.

Shards store each background once (`<res>/backgrounds.tar`); a sample carries only its bgid.
Decoding each background once per loader instead of once per sample saves a third of the
JPEG decoding; the pipeline joins them with one `fn.python_function` call per batch.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.shard import schema


def _bg_id(member: str) -> int | None:
    """Background id of a `bg000102.jpg` member name, or None for other members."""
    stem, dot, ext = member.rpartition("/")[2].partition(".")
    prefix = schema.bg_key(0).rstrip("0")
    if not dot or ext != schema.EXT_BG or not stem.startswith(prefix):
        return None
    digits = stem[len(prefix) :]
    return int(digits) if digits.isdigit() else None


def read_backgrounds(tar_path: Path) -> dict[int, bytes]:
    """Every background's JPEG bytes in a backgrounds.tar, by id."""
    encoded: dict[int, bytes] = {}
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                bg = _bg_id(member.name) if member.isfile() else None
                if bg is not None:
                    encoded[bg] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError) as err:
        raise DepthkitError(f"unreadable background file {tar_path}: {err}") from None
    if not encoded:
        raise DepthkitError(f"no backgrounds in {tar_path}")
    return encoded


class BackgroundBank:
    """Decoded backgrounds (uint8 HWC RGB, res x res) by id, with batch lookups for DALI."""

    def __init__(self, images: dict[int, np.ndarray], encoded: dict[int, bytes] | None = None):
        self.images = images
        self.encoded = encoded or {}

    @classmethod
    def from_tar(cls, tar_path: Path, res: int) -> BackgroundBank:
        """Decode every background of backgrounds.tar once, resized to res x res if needed."""
        encoded = read_backgrounds(Path(tar_path))
        images = {}
        for bg, data in encoded.items():
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im = im.convert("RGB")
                    if im.size != (res, res):
                        im = im.resize((res, res), Image.BILINEAR)
                    images[bg] = np.ascontiguousarray(np.asarray(im))
            except OSError as err:
                name = schema.bg_key(bg)
                raise DepthkitError(f"corrupt background {name} in {tar_path}: {err}") from None
        return cls(images, encoded)

    def ids(self) -> list[int]:
        """Background ids held, ascending."""
        return sorted(self.images)

    def _get(self, table: dict, bgid: np.ndarray) -> object:
        key = int(bgid.reshape(-1)[0])
        try:
            return table[key]
        except KeyError:
            raise KeyError(f"background id {key} is not in the background set") from None

    def lookup(self, bgids: list[np.ndarray]) -> list[np.ndarray]:
        """Decoded backgrounds of a batch of bgid tensors (DALI `python_function`, batch mode)."""
        return [self._get(self.images, b) for b in bgids]  # type: ignore[misc]

    def lookup_encoded(self, bgids: list[np.ndarray]) -> list[np.ndarray]:
        """JPEG bytes of a batch (to decode per sample instead: for measuring the bank's saving)."""
        return [np.frombuffer(self._get(self.encoded, b), np.uint8) for b in bgids]  # type: ignore[arg-type]
