"""Which sample goes to which split, shard and position: a pure function of keys and seed.

The global shuffle orders samples by sha256(seed, key), so a sample's place depends only on
its own key, the seed and the set of keys: reruns (and resumed runs) make the same plan, with
no dependence on the order a source yields its members or on a random-number library.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from depthkit.core.errors import DepthkitError
from depthkit.shard.schema import shard_name

SPLIT_METHODS = ("random", "by-bg")


@dataclass(frozen=True)
class SplitConfig:
    """How samples are held out for validation."""

    method: str = "random"  # "random": any sample; "by-bg": whole backgrounds
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise DepthkitError(f"--split must be one of {', '.join(SPLIT_METHODS)}, "
                                f"not {self.method!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DepthkitError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")


@dataclass(frozen=True)
class ShardSpec:
    """One planned shard: its split, number, and keys in write order."""

    split: str
    index: int
    keys: tuple[str, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


@dataclass(frozen=True)
class Plan:
    """The full assignment of keys to shards (train shards first, then val)."""

    shards: tuple[ShardSpec, ...]
    val_bgs: tuple[int, ...] | None  # held-out backgrounds (by-bg split only)
    slot: dict[str, tuple[int, int]] = field(repr=False, compare=False)  # key -> (shard, pos)

    def count(self, split: str) -> int:
        return sum(len(s.keys) for s in self.shards if s.split == split)

    def fingerprint(self) -> str:
        """sha256 of the plan (keys in order per shard): equal plans, equal fingerprints."""
        h = hashlib.sha256()
        for s in self.shards:
            h.update(f"{s.name}:{len(s.keys)}\n".encode())
            h.update("\n".join(s.keys).encode())
        h.update(json.dumps(self.val_bgs).encode())
        return h.hexdigest()


def shuffle_rank(seed: int, name: str) -> bytes:
    """The sort key of one item in the seeded global shuffle."""
    return hashlib.sha256(f"{seed}:{name}".encode()).digest()


def _chunks(keys: list[str], shard_size: int) -> list[list[str]]:
    """Split into ceil(n / shard_size) runs of near-equal length (so no tiny last shard)."""
    if not keys:
        return []
    n = math.ceil(len(keys) / shard_size)
    base, extra = divmod(len(keys), n)
    out, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        out.append(keys[start:stop])
        start = stop
    return out


def make_plan(samples: Iterable[tuple[str, int]], split: SplitConfig, shard_size: int) -> Plan:
    """Plan shards for (key, bg id) pairs: split, globally shuffle, cut into shards."""
    if shard_size < 1:
        raise DepthkitError(f"--shard-size must be at least 1, not {shard_size}")
    pairs = sorted(set(samples))
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DepthkitError("source lists a sample key under two backgrounds")
    order = sorted(keys, key=lambda k: shuffle_rank(split.seed, k))
    val_bgs: tuple[int, ...] | None = None
    if split.method == "random":
        n_val = round(len(order) * split.val_fraction)
        val_set = set(order[:n_val])
    else:
        bgs = sorted({bg for _, bg in pairs}, key=lambda b: shuffle_rank(split.seed, f"bg{b}"))
        n_val_bgs = round(len(bgs) * split.val_fraction)
        if split.val_fraction > 0 and n_val_bgs == 0 and len(bgs) > 1:
            n_val_bgs = 1
        val_bgs = tuple(sorted(bgs[:n_val_bgs]))
        bg_of = dict(pairs)
        val_set = {k for k in keys if bg_of[k] in val_bgs}
    train = [k for k in order if k not in val_set]
    val = [k for k in order if k in val_set]
    shards: list[ShardSpec] = []
    for name, ks in (("train", train), ("val", val)):
        for i, chunk in enumerate(_chunks(ks, shard_size)):
            shards.append(ShardSpec(name, i, tuple(chunk)))
    slot = {k: (si, pos) for si, s in enumerate(shards) for pos, k in enumerate(s.keys)}
    return Plan(tuple(shards), val_bgs, slot)
