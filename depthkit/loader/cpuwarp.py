"""The CPU backend's geometry: resize, affine warp and grid distortion of a batch's four images
in one numpy pass, one `fn.python_function` call per batch.

Each sample's affine matrix (flip, rotate-90, shift-scale-rotate) and grid draw are composed
into one source coordinate per output pixel, and all four images are sampled from it with the
same integer taps: bilinear (8-bit weights, uint16 arithmetic) for bg, fgbg and depth, nearest
for the mask. The four images are packed into 8 bytes per pixel, so one gather serves all of
them. One resampling instead of an affine warp followed by a grid warp, and about half the CPU
time of DALI's CPU `warp_affine` alone (2.3 against 4.8 ms for a 224 px sample's four images,
measured back to back on a loaded 2-core box).
Samples whose geometry only permutes pixels (none, a flip, a rotation by 90 degrees) are
copied, not resampled, and those that add a grid to such a permutation are resampled along x,
then y (the map is separable).

The work is cut into chunks of output rows that fit the cache. Every temporary lives in
scratch buffers and the outputs in buffers kept from batch to batch (DALI copies a
python_function's outputs before its next call): fresh large arrays would be fresh memory
mappings, whose page faults cost more than the arithmetic. It runs on one thread, DALI's, which
runs no other CPU op meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 16384  # output pixels per chunk (its temporaries: ~2 MB)
IMAGES = ("bg", "fgbg", "mask", "depth")  # python_function inputs and outputs, in this order
NEAREST = {"bg": False, "fgbg": False, "mask": True, "depth": False}
PACKED = ("bg", "depth", "fgbg", "mask")  # 3 + 1 + 3 + 1 channels: one uint64 per pixel
_WORDS = {8: np.uint64}  # pixel sizes gathered as one machine word
_LANES = np.uint64(0x0001_0001_0001_0001)
_TOL = 1e-4  # a matrix entry this close to an integer counts as one (float32 rotations)


def grid_coords(factors: np.ndarray, size: int) -> np.ndarray:
    """Continuous source coordinate (pixel edges at integers) of each destination pixel centre
    along one axis of a grid distortion; numpy twin of `gridwarp.source_coords`."""
    widths = 1.0 + np.asarray(factors, np.float64)
    knots = np.concatenate([[0.0], np.cumsum(widths)]) / widths.sum() * size
    return np.interp(np.arange(size) + 0.5, np.linspace(0, size, len(widths) + 1), knots)


def permutation(matrix: np.ndarray, res: int) -> np.ndarray | None:
    """The 2x2 signed permutation of a forward matrix that maps pixel centres of a res x res
    image onto pixel centres (identity, flips, rotations by 90 degrees), else None."""
    lin = np.rint(matrix[:, :2])
    if np.abs(matrix[:, :2] - lin).max() > _TOL or np.count_nonzero(lin) != 2 \
            or abs(abs(lin[0, 0] * lin[1, 1] - lin[0, 1] * lin[1, 0]) - 1) > _TOL:
        return None
    c = res / 2.0
    return lin if np.abs(matrix[:, 2] - (c - lin.sum(1) * c)).max() <= 1e-3 else None


def permuted(image: np.ndarray, lin: np.ndarray) -> np.ndarray:
    """A view of HWC `image` under the signed permutation `lin` (see `permutation`)."""
    inv = lin.T.astype(int)  # destination -> source
    if inv[0, 1] == 0:
        return image[:: inv[1, 1], :: inv[0, 0]]
    return image.swapaxes(0, 1)[:: inv[0, 1], :: inv[1, 0]]


def inverse_map(matrix: np.ndarray, res: int, size: tuple[int, int]) -> np.ndarray:
    """2x3 map from output continuous coordinates to those of a (h, w) source image, for a
    forward matrix on the res x res image (the source is first resized to res x res).

    Written out rather than np.linalg: a LAPACK call would start OpenBLAS's thread pool in
    DALI's thread, whose spinning threads cost CPU and break a later fork (the shard pools).
    """
    (a, b, tx), (c, d, ty) = np.asarray(matrix, np.float64).reshape(2, 3)
    det = a * d - b * c
    inv = np.array([[d, -b, b * ty - d * tx], [-c, a, c * tx - a * ty]]) / det
    h, w = size
    return inv * np.array([[w / res], [h / res]])


@dataclass
class Target:
    """An output image: channels `channels` of source `source`, sampled nearest or bilinear
    into `out` (count, res, res, C)."""

    source: int
    channels: slice
    nearest: bool
    out: np.ndarray


@dataclass
class Job:
    """Images of `count` samples that share one source size and one map per sample.

    `sources`: (count, h, w, K) uint8, gathered as one word per pixel when K is 8 (the four
    images packed into one source: one gather serves all); `inv` (count, 2, 3)
    output -> source maps; `gx`, `gy` (count, res) float32 grid coordinates of the output
    columns and rows (x + 0.5 without a grid).
    """

    sources: list[np.ndarray]
    targets: list[Target]
    inv: np.ndarray
    gx: np.ndarray
    gy: np.ndarray

    @property
    def res(self) -> int:
        return self.targets[0].out.shape[1]

    def chunks(self) -> list[tuple[int, int]]:
        """[r0, r1) ranges of output rows (over all samples) of at most CHUNK pixels."""
        rows, step = len(self.inv) * self.res, max(1, CHUNK // self.res)
        return [(r, min(rows, r + step)) for r in range(0, rows, step)]


class _Scratch:
    """Temporaries by name, grown on demand and then reused."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None or a.size < n or a.dtype != dtype:
            a = self._arrays[name] = np.empty(max(n, CHUNK * 4), dtype)
        return a[:n]


def _pixels(src: np.ndarray) -> np.ndarray:
    """A source's pixels for gathering: (N,) words for 8 channels, else (N, K) uint8."""
    k = src.shape[3]
    return src.reshape(-1).view(_WORDS[k]) if k in _WORDS else src.reshape(-1, k)


def _coords(job: Job, r0: int, r1: int, s: _Scratch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fx, fy) in 1/256 source pixels (int32, clipped to the image: the border repeats) and
    the flat index base of each row's sample, for output rows r0..r1."""
    res = job.res
    h, w = job.sources[0].shape[1:3]
    rows = np.arange(r0, r1)
    smp, y = np.divmod(rows, res)
    inv, gy = job.inv[smp], job.gy[smp, y]
    n = (r1 - r0) * res
    gx = np.take(job.gx, smp, axis=0, out=s.get("gx", n, np.float32).reshape(-1, res),
                 mode="clip")
    out = []
    for axis, top, name in ((0, w - 1, "fx"), (1, h - 1, "fy")):
        f = s.get("f" + name, n, np.float32).reshape(-1, res)
        np.multiply(gx, inv[:, axis, 0:1], out=f)
        f += (inv[:, axis, 1] * gy + inv[:, axis, 2] - 0.5).astype(np.float32)[:, None]
        np.clip(f, 0, top, out=f)
        f *= 256
        out.append(s.get(name, n, np.int32))
        np.copyto(out[-1], f.reshape(-1), casting="unsafe")  # truncation: floor, f >= 0
    return out[0], out[1], (smp * (h * w)).astype(np.intp)


def _index(fx: np.ndarray, fy: np.ndarray, base: np.ndarray, w: int, s: _Scratch,
           name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat source index (intp) of the pixel (fx >> 8, fy >> 8) with the row bases added,
    x, y): the pixel holding each coordinate in 1/256 pixels."""
    x, y = s.get(name + "x", fx.size, np.int32), s.get(name + "y", fy.size, np.int32)
    np.right_shift(fx, 8, out=x)
    np.right_shift(fy, 8, out=y)
    i = s.get(name, fx.size, np.intp)
    np.multiply(y, w, out=i, dtype=np.intp)
    i += x
    i.reshape(len(base), -1)[...] += base[:, None]
    return i, x, y


def _taps(job: Job, fx: np.ndarray, fy: np.ndarray, base: np.ndarray, s: _Scratch) -> dict:
    """The four bilinear neighbour indices and the 8-bit weights (uint16) of a chunk."""
    h, w = job.sources[0].shape[1:3]
    i00, x0, y0 = _index(fx, fy, base, w, s, "i00")
    dx = s.get("dx", fx.size, np.intp)
    np.less(x0, w - 1, out=dx, casting="unsafe")  # the last column repeats
    dy = s.get("dy", fx.size, np.intp)
    np.less(y0, h - 1, out=dy, casting="unsafe")
    dy *= w
    i01, i10, i11 = (s.get(k, fx.size, np.intp) for k in ("i01", "i10", "i11"))
    np.add(i00, dx, out=i01)
    np.add(i00, dy, out=i10)
    np.add(i10, dx, out=i11)
    taps = {"i": (i00, i01, i10, i11)}
    for name, f in (("wx", fx), ("wy", fy)):
        wt = s.get(name, f.size, np.uint16)
        np.bitwise_and(f, 255, out=wt, casting="unsafe")
        taps[name] = wt
    return taps


def _weights(taps: dict, c: int, s: _Scratch) -> tuple[np.ndarray, ...]:
    """(wx, 256 - wx, wy, 256 - wy) repeated for c interleaved channels (cached per chunk)."""
    if c not in taps:
        out = []
        for name in ("wx", "wy"):
            wt = taps[name]
            rep = s.get(f"{name}{c}", wt.size * c, np.uint16)
            if c == 8:  # one multiply repeats a weight into the 4 16-bit lanes of a uint64
                lanes = rep.view(np.uint64).reshape(wt.size, 2)
                np.multiply(wt, _LANES, out=lanes[:, 0], dtype=np.uint64)
                lanes[:, 1] = lanes[:, 0]
            else:
                np.copyto(rep.reshape(-1, c), wt[:, None])
            inv = s.get(f"{name}{c}i", wt.size * c, np.uint16)
            np.subtract(256, rep, out=inv)
            out += [rep, inv]
        taps[c] = tuple(out)
    return taps[c]


def _lerp(a: np.ndarray, b: np.ndarray, wt: np.ndarray, inv: np.ndarray, out: np.ndarray,
          tmp: np.ndarray) -> np.ndarray:
    """out = round((a * inv + b * wt) / 256) on uint16 (a, b <= 255, wt + inv = 256)."""
    np.multiply(a, inv, out=out)
    np.multiply(b, wt, out=tmp)
    out += tmp
    out += 128
    out >>= 8
    return out


def _gather(pixels: np.ndarray, index: np.ndarray, c: int, buf: np.ndarray) -> np.ndarray:
    """pixels at index into buf, as (n, c) uint8."""
    n = index.size
    if pixels.ndim == 1:  # one word per pixel
        np.take(pixels, index, out=buf.view(pixels.dtype)[:n], mode="clip")
    else:
        np.take(pixels, index, axis=0, out=buf[: n * c].reshape(n, c), mode="clip")
    return buf[: n * c].reshape(n, c)


def _bilinear(pixels: np.ndarray, c: int, taps: dict, s: _Scratch) -> np.ndarray:
    """Bilinear samples (n, c) uint16 of a source's pixels at the chunk's taps."""
    n = taps["wx"].size
    wx, iwx, wy, iwy = _weights(taps, c, s)
    g = [_gather(pixels, i, c, s.get(f"g{k}", n * c, np.uint8)).reshape(-1)
         for k, i in enumerate(taps["i"])]
    top, bot, tmp = (s.get(k, n * c, np.uint16) for k in ("top", "bot", "tmp"))
    _lerp(g[0], g[1], wx, iwx, top, tmp)
    _lerp(g[2], g[3], wx, iwx, bot, tmp)
    return _lerp(top, bot, wy, iwy, top, tmp).reshape(n, c)


def run_chunk(job: Job, r0: int, r1: int, s: _Scratch) -> None:
    """Resample output rows r0..r1 of every target of the job."""
    res, w = job.res, job.sources[0].shape[2]
    fx, fy, base = _coords(job, r0, r1, s)
    taps, nearest = None, None
    for k, src in enumerate(job.sources):
        pixels, c = _pixels(src), src.shape[3]
        mine = [t for t in job.targets if t.source == k]
        if any(not t.nearest for t in mine):
            taps = taps or _taps(job, fx, fy, base, s)
            smooth = _bilinear(pixels, c, taps, s)
        if any(t.nearest for t in mine):
            if nearest is None:
                rx, ry = s.get("rx", fx.size, np.int32), s.get("ry", fy.size, np.int32)
                np.add(fx, 128, out=rx)
                np.add(fy, 128, out=ry)
                nearest = _index(rx, ry, base, w, s, "inn")[0]
            near = _gather(pixels, nearest, c, s.get("near", fx.size * c, np.uint8))
        for t in mine:
            dst = t.out.reshape(-1, t.out.shape[3])[r0 * res : r1 * res]
            _copy_channels(dst, (near if t.nearest else smooth)[:, t.channels])


def _axis_taps(coords: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """(i0, i1, 8-bit weight (uint16), nearest) along one axis for continuous coordinates."""
    f = (np.clip(coords - 0.5, 0, n - 1) * 256).astype(np.intp)
    i0 = f >> 8
    return i0, np.minimum(i0 + 1, n - 1), (f & 255).astype(np.uint16), (f + 128) >> 8


def separable(src: np.ndarray, lin: np.ndarray, gx: np.ndarray, gy: np.ndarray,
              s: _Scratch) -> tuple[np.ndarray, np.ndarray]:
    """(bilinear uint16, nearest uint8) (res, res, 8) samples of a packed 8-channel res x res
    source under a signed permutation `lin` then a grid (gx, gy): the map is separable, so x
    and y are resampled one after the other, with the arithmetic of the 2-D path."""
    h, w = src.shape[:2]
    words = permuted(src.reshape(h, w * 8).view(np.uint64)[..., None], lin)[..., 0]
    h, w = words.shape
    (x0, x1, wx, xn), (y0, y1, wy, yn) = _axis_taps(gx, w), _axis_taps(gy, h)
    g = [s.get(f"sep{k}", h * w, np.uint64).reshape(h, w) for k in range(2)]
    top, tmp = (s.get(k, h * w * 8, np.uint16).reshape(h, w * 8) for k in ("top", "tmp"))
    mid = s.get("mid", h * w * 8, np.uint8).reshape(h, w * 8)
    as8 = [a.view(np.uint8).reshape(h, w * 8) for a in g]
    for k, i in enumerate((x0, x1)):
        np.take(words, i, axis=1, out=g[k], mode="clip")
    wx8 = np.repeat(wx, 8)
    _lerp(as8[0], as8[1], wx8, 256 - wx8, top, tmp)
    np.copyto(mid, top, casting="unsafe")
    for k, i in enumerate((y0, y1)):
        np.take(mid.view(np.uint64), i, axis=0, out=g[k], mode="clip")
    _lerp(as8[0], as8[1], wy[:, None], 256 - wy[:, None], top, tmp)
    np.take(words, xn, axis=1, out=g[0], mode="clip")
    np.take(g[0], yn, axis=0, out=g[1], mode="clip")
    return top.reshape(h, w, 8), as8[1].reshape(h, w, 8)


def _copy_channels(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src (casting) one channel at a time: numpy's loops over a last axis of 3 or
    4 interleaved channels are ~10x slower than a strided copy per channel."""
    for ch in range(dst.shape[-1]):
        np.copyto(dst[..., ch], src[..., ch], casting="unsafe")


class CpuWarp:
    """The CPU graph's python_function (batch mode): bg, fgbg, mask, depth (uint8 HWC, any
    size), matrix (2x3 forward, res pixels) and grid (2, steps) -> the four images at res x res.
    """

    def __init__(self, res: int) -> None:
        self.res = res
        self._scratch = _Scratch()
        self._buffers: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, *batch: list[np.ndarray]) -> tuple[list[np.ndarray], ...]:
        images = dict(zip(IMAGES, batch[:4], strict=True))
        matrices, grids = batch[4], batch[5]
        out = {k: list(v) for k, v in images.items()}  # no geometry: the inputs as they are
        jobs, shared = [], []
        for i, (matrix, grid) in enumerate(zip(matrices, grids, strict=True)):
            if {images[k][i].shape[:2] for k in IMAGES} != {(self.res, self.res)}:
                jobs += self._single_jobs(images, out, i, matrix, grid)
                continue
            lin = permutation(matrix, self.res)
            if lin is None:
                shared.append(i)
            elif np.any(grid):
                self._separable(images, out, i, lin, grid)
            elif not np.array_equal(lin, np.eye(2)):
                self._permute(images, out, i, lin)
        if shared:
            jobs.append(self._shared_job(images, out, shared, matrices, grids))
        self._run(jobs)
        return tuple(out[k] for k in IMAGES)

    def _buffer(self, name: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 buffer kept between calls, at least shape[0] long."""
        buf = self._buffers.get((name, key))
        if buf is None or buf.shape[1:] != shape[1:] or len(buf) < shape[0]:
            buf = self._buffers[(name, key)] = np.empty(shape, np.uint8)
        return buf

    def _permute(self, images: dict, out: dict, i: int, lin: np.ndarray) -> None:
        """Sample i's images copied through a flip / rotation by 90 degrees."""
        for k in IMAGES:
            src = images[k][i]
            buf = self._buffer("perm", k, (len(images[k]), *src.shape))
            _copy_channels(buf[i], permuted(src, lin))
            out[k][i] = buf[i]

    def _separable(self, images: dict, out: dict, i: int, lin: np.ndarray,
                   grid: np.ndarray) -> None:
        """Sample i's images through a flip / rotation by 90 degrees and a grid."""
        res, n = self.res, len(images["bg"])
        src = self._buffer("sep", "all", (n, res, res, 8))[i]
        first, parts = 0, []
        for k in PACKED:
            c = images[k][i].shape[2]
            _copy_channels(src[..., first : first + c], images[k][i])
            parts.append((k, slice(first, first + c)))
            first += c
        smooth, near = separable(src, lin, *self._grid_axes(grid), self._scratch)
        for k, channels in parts:
            dst = self._buffer("sepout", k, (n, res, res, channels.stop - channels.start))[i]
            _copy_channels(dst, (near if NEAREST[k] else smooth)[..., channels])
            out[k][i] = dst

    def _grid_axes(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(gx, gy): the grid coordinates of the output columns and rows (float32)."""
        if not np.any(grid):
            ident = np.arange(self.res, dtype=np.float32) + 0.5
            return ident, ident
        return (grid_coords(grid[0], self.res).astype(np.float32),
                grid_coords(grid[1], self.res).astype(np.float32))

    def _shared_job(self, images: dict, out: dict, idx: list[int], matrices: list,
                    grids: list) -> Job:
        """One job for the samples whose four images are all res x res: one map each, the
        four packed into one 8-channel source (one gather per pixel serves all)."""
        res, n = self.res, len(images["bg"])
        src = self._buffer("src", "all", (n, res, res, 8))[: len(idx)]
        targets, first = [], 0
        for k in PACKED:
            c = images[k][idx[0]].shape[2]
            dst = self._buffer("out", k, (n, res, res, c))[: len(idx)]
            for j, i in enumerate(idx):
                _copy_channels(src[j, ..., first : first + c], images[k][i])
                out[k][i] = dst[j]
            targets.append(Target(0, slice(first, first + c), NEAREST[k], dst))
            first += c
        axes = [self._grid_axes(grids[i]) for i in idx]
        return Job([src], targets,
                   np.stack([inverse_map(matrices[i], res, (res, res)) for i in idx]),
                   np.stack([a[0] for a in axes]), np.stack([a[1] for a in axes]))

    def _single_jobs(self, images: dict, out: dict, i: int, matrix: np.ndarray,
                     grid: np.ndarray) -> list[Job]:
        """One job per image of sample i (some image is not res x res: each has its own map,
        the resize folded in)."""
        gx, gy = self._grid_axes(grid)
        jobs = []
        for k in IMAGES:
            src = images[k][i]
            dst = np.empty((1, self.res, self.res, src.shape[2]), np.uint8)
            out[k][i] = dst[0]
            inv = inverse_map(matrix, self.res, src.shape[:2])
            target = Target(0, slice(0, src.shape[2]), NEAREST[k], dst)
            jobs.append(Job([src[None]], [target], inv[None], gx[None], gy[None]))
        return jobs

    def _run(self, jobs: list[Job]) -> None:
        for job in jobs:
            for r0, r1 in job.chunks():
                run_chunk(job, r0, r1, self._scratch)
