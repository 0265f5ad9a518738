"""Check one sample's images and produce its JPEG components at each target resolution.

Every image is decoded (the whole bitstream; JPEGs at 1/8 scale via `Image.draft`, which
skips most of the inverse DCT but still entropy-decodes every block, so truncation and
most corruption are caught). Sizes come from the header first, so oversized images
(decompression bombs) are refused before any pixel is decoded. Bytes already at the target
size and in JPEG are passed through unchanged; anything else is resized and re-encoded.
Pure functions of bytes in, bytes out: they run in worker processes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from depthkit.shard.schema import JPEG_QUALITY
from depthkit.source.checks import size_problem

# Refuse images above this many pixels before decoding (the original data is 224 x 224).
DEFAULT_MAX_PIXELS = 4096 * 4096

FORMATS = ("JPEG", "PNG")

# Resampling used when an image must be resized: smooth for photos, no overshoot for targets.
RESAMPLE = {"RGB": Image.Resampling.BICUBIC, "L": Image.Resampling.BILINEAR}


class Rejected(Exception):
    """An image or sample that cannot be used: `kind` is a short category (for counts),
    the message says why in a few words."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Decoded:
    """A checked image: header size, format and, when a resize is needed, its full pixels."""

    size: tuple[int, int]
    format: str
    image: Image.Image | None


def decode_checked(data: bytes, what: str, mode: str, resolutions: tuple[int, ...],
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Open, size-check and decode an image; raise Rejected naming `what` on any fault.

    Pixels are kept only if some resolution needs a resize/re-encode; otherwise a JPEG is
    decoded at 1/8 scale (a check of the whole bitstream) and dropped.
    """
    if not data:
        raise Rejected("empty", f"{what}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
        size = im.size
        w, h = size
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise Rejected("too-large",
                           f"{what}: {w}x{h} exceeds {max_pixels} pixels (decompression bomb?)")
        if im.mode != mode:
            raise Rejected("channels",
                           f"{what}: mode {im.mode}, expected {mode} ({len(mode)} channel(s))")
        fmt = str(im.format)
        keep = fmt != "JPEG" or any(size != (r, r) for r in resolutions)
        if not keep:
            im.draft(mode, (max(1, w // 8), max(1, h // 8)))
        im.load()
    except Rejected:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise Rejected("too-large", f"{what}: refused, {err}") from None
    except UnidentifiedImageError:
        raise Rejected("undecodable", f"{what}: not a JPEG or PNG image") from None
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        reason = f"{what}: cannot decode ({type(err).__name__}: {err})"
        raise Rejected("undecodable", reason) from None
    return Decoded(size, fmt, im if keep else None)


def encode_jpeg(im: Image.Image) -> bytes:
    """JPEG bytes at the project quality."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def at_res(d: Decoded, res: int) -> bytes | None:
    """None (= keep the source bytes) if already a res x res JPEG, else resized JPEG bytes."""
    if d.format == "JPEG" and d.size == (res, res):
        return None
    assert d.image is not None
    im = d.image
    if im.size != (res, res):
        im = im.resize((res, res), RESAMPLE[im.mode])
    return encode_jpeg(im)


def _convert(data: bytes, what: str, mode: str, resolutions: tuple[int, ...],
             max_pixels: int) -> tuple[tuple[int, int], dict[int, bytes | None]]:
    d = decode_checked(data, what, mode, resolutions, max_pixels)
    return d.size, {r: at_res(d, r) for r in resolutions}


@dataclass(frozen=True)
class SampleResult:
    """Converted components of one sample: per resolution (fgbg, mask, depth), where None
    means "the source bytes, unchanged"; or the reason it was rejected."""

    key: str
    outputs: dict[int, tuple[bytes | None, bytes | None, bytes | None]] | None
    reason: str | None = None
    kind: str | None = None


def convert_sample(key: str, fgbg: bytes, mask: bytes, depth: bytes,
                   resolutions: tuple[int, ...], max_pixels: int = DEFAULT_MAX_PIXELS
                   ) -> SampleResult:
    """Check one sample (decode, channels, matching sizes) and convert it to each resolution."""
    try:
        fsize, f_out = _convert(fgbg, "fgbg", "RGB", resolutions, max_pixels)
        msize, m_out = _convert(mask, "mask", "L", resolutions, max_pixels)
        dsize, d_out = _convert(depth, "depth", "L", resolutions, max_pixels)
        bad_size = size_problem(fsize, msize, dsize)
        if bad_size:
            raise Rejected("size", bad_size)
    except Rejected as err:
        return SampleResult(key, None, str(err), err.kind)
    outputs = {r: (f_out[r], m_out[r], d_out[r]) for r in resolutions}
    return SampleResult(key, outputs)


def convert_batch(jobs: list[tuple[str, bytes, bytes, bytes]], resolutions: tuple[int, ...],
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> list[SampleResult]:
    """`convert_sample` over a list of (key, fgbg, mask, depth): one task for a worker process."""
    return [convert_sample(k, f, m, d, resolutions, max_pixels) for k, f, m, d in jobs]


def convert_background(bg: int, data: bytes, resolutions: tuple[int, ...],
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[int, bytes]:
    """A background's JPEG bytes at each resolution (Rejected if unusable)."""
    _, outs = _convert(data, f"background {bg}", "RGB", resolutions, max_pixels)
    return {r: data if b is None else b for r, b in outs.items()}
