"""A shard's samples as tar members: the members each sample gets (`sample_members`) and
the worker task of random-access sources (`convert_refs`): read a batch of samples by their
refs, decode-check and convert them, and lay them out as one tar fragment per resolution, so
only those fragments travel back to the process that writes the shard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from depthkit.shard import schema
from depthkit.shard.convert import convert_sample
from depthkit.shard.tario import Fragment, tar_fragment
from depthkit.source.readers import MemberReader, read_ref
from depthkit.source.sample import Problem, Sample, SampleRef


def sample_meta(sample: Sample) -> bytes:
    """The `<key>.meta.json` component: where the sample came from."""
    return json.dumps({"bg": sample.bg, "group": sample.group, "nnn": sample.nnn,
                       "fg": sample.fg, "flip": bool(sample.flip), "src": sample.path},
                      sort_keys=True).encode()


def sample_members(key: str, bg: int, meta: bytes, images: Sequence[bytes]
                   ) -> list[tuple[str, bytes]]:
    """One sample's tar members (name, bytes) in shard order (`schema.FIELDS`); `images` are
    its encoded images in `schema.IMAGE_FIELDS` order."""
    data = {f.name: b for f, b in zip(schema.IMAGE_FIELDS, images, strict=True)}
    data.update(bgid=schema.encode_bgid(bg), meta=meta)
    return [(f"{key}.{f.ext}", data[f.name]) for f in schema.FIELDS]


def converted_images(sample: Sample, outputs: Sequence[bytes | None]) -> list[bytes]:
    """A sample's images at one resolution (`schema.IMAGE_FIELDS` order): each converted
    output, or the source bytes where conversion passed them through unchanged (None)."""
    return [getattr(sample, f.name) if b is None else b
            for f, b in zip(schema.IMAGE_FIELDS, outputs, strict=True)]


@dataclass(frozen=True)
class Part:
    """Converted samples of one batch: a tar fragment per resolution, and the rejects
    ({"path", "reason", "kind"}) in batch order."""

    fragments: dict[int, Fragment]
    samples: int
    rejects: list[dict[str, str]]


def convert_refs(refs: list[SampleRef], reader: MemberReader, resolutions: tuple[int, ...],
                 max_pixels: int) -> Part:
    """Read, check and convert a batch of samples in order (runs in a worker process)."""
    items: dict[int, list[tuple[str, bytes]]] = {r: [] for r in resolutions}
    rejects: list[dict[str, str]] = []
    n = 0
    for ref in refs:
        s = read_ref(ref, reader)
        if isinstance(s, Problem):
            rejects.append({"path": s.path, "reason": s.reason, "kind": "source"})
            continue
        r = convert_sample(s.key, s.fgbg, s.mask, s.depth, resolutions, max_pixels)
        if r.reason is not None or r.outputs is None:
            rejects.append({"path": s.path, "reason": str(r.reason),
                            "kind": r.kind or "invalid"})
            continue
        meta = sample_meta(s)
        for res in resolutions:
            items[res] += sample_members(s.key, s.bg, meta,
                                         converted_images(s, r.outputs[res]))
        n += 1
    return Part({res: tar_fragment(items[res]) for res in resolutions}, n, rejects)
