"""A shard's samples as tar members: the five members each sample gets (`sample_members`) and
the worker task of random-access sources (`convert_refs`): read a batch of samples by their
refs, decode-check and convert them, and lay them out as one tar fragment per resolution, so
only those fragments travel back to the process that writes the shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from depthkit.shard import schema
from depthkit.shard.convert import convert_sample
from depthkit.shard.tario import Fragment, tar_fragment
from depthkit.source.layout import MemberReader, Problem, SampleRef, read_ref


def sample_meta(sample: Any) -> bytes:
    """The `<key>.meta.json` component: where the sample came from."""
    return json.dumps({"bg": sample.bg, "group": sample.group, "nnn": sample.nnn,
                       "fg": sample.fg, "flip": bool(sample.flip), "src": sample.path},
                      sort_keys=True).encode()


def sample_members(key: str, bg: int, meta: bytes, fgbg: bytes, mask: bytes,
                   depth: bytes) -> list[tuple[str, bytes]]:
    """One sample's tar members (name, bytes) in shard order."""
    return [(f"{key}.{schema.EXT_FGBG}", fgbg), (f"{key}.{schema.EXT_MASK}", mask),
            (f"{key}.{schema.EXT_DEPTH}", depth), (f"{key}.{schema.EXT_BGID}",
                                                   schema.encode_bgid(bg)),
            (f"{key}.{schema.EXT_META}", meta)]


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
            f, m, d = r.outputs[res]
            items[res] += sample_members(s.key, s.bg, meta, s.fgbg if f is None else f,
                                         s.mask if m is None else m,
                                         s.depth if d is None else d)
        n += 1
    return Part({res: tar_fragment(items[res]) for res in resolutions}, n, rejects)
