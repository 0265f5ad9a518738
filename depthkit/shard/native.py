"""The source's own resolution, the default of `depthkit shard --res`: a 64 px dataset gets
64 px shards with its bytes copied as they are, not a silent upsampling to some fixed size."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from io import BytesIO
from itertools import islice

from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.shard.direct import is_random_access
from depthkit.shard.schema import RES_MULTIPLE
from depthkit.source import Problem, Source

PROBE = 16  # planned samples tried for a readable fgbg before giving up


def source_resolution(source: Source, keys: Collection[str],
                      bgs: Collection[int] | None) -> int:
    """The side of the first planned sample's fgbg whose size can be read (header only);
    a one-line error if the images are not square or not a multiple of RES_MULTIPLE."""
    for data in islice(_fgbgs(source, keys, bgs), PROBE):
        try:
            with Image.open(BytesIO(data)) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001,S112 - PIL raises many types on bad data; try the next
            continue
        if w != h:
            raise DepthkitError(f"the source's images are {w}x{h}, not square: "
                                "choose the shards' size with --res")
        if w % RES_MULTIPLE:
            near = max(RES_MULTIPLE, round(w / RES_MULTIPLE) * RES_MULTIPLE)
            raise DepthkitError(f"the source's images are {w} px, not a multiple of "
                                f"{RES_MULTIPLE}: choose the shards' size, e.g. --res {near}")
        return w
    raise DepthkitError(f"no readable fgbg in the source's first {PROBE} samples to take "
                        "the resolution from: give --res")


def _fgbgs(source: Source, keys: Collection[str], bgs: Collection[int] | None
           ) -> Iterator[bytes]:
    """The stored fgbg bytes of planned samples, in source order (folders and zips read only
    those files; the .7z set streams from its start)."""
    if is_random_access(source):
        reader = source.reader()
        try:
            for ref in source.sample_refs(bgs):
                if isinstance(ref, Problem) or ref.key not in keys:
                    continue
                try:
                    yield reader.read(ref.members[0])
                except OSError:
                    continue
        finally:
            reader.close()
        return
    samples = source.samples(check=False, bgs=bgs)
    try:
        for item in samples:
            if not isinstance(item, Problem) and item.key in keys:
                yield item.fgbg
    finally:
        close = getattr(samples, "close", None)  # a generator: stop the archive streams
        if close is not None:
            close()
