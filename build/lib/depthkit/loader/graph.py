"""The per-sample DALI graph, one stage per function, composed by `define`.

Per sample::

    read (fgbg, mask, depth, bgid) --background join by id--> bg
    decode -> geometry [one affine warp per image, one matrix per sample, only if needed]
           -> colour and grid parameters (the CPU backend grid-distorts here, the GPU one in torch)
           -> normalise (bg, fgbg by the stats), scale (depth to [0, 1]), mask as CHW uint8

Components, their extensions, reader dtypes, decode types and scaling come from the field
table `depthkit.shard.schema.FIELDS`. Stages run inside a DALI pipeline definition with
conditionals on (an `if` on a per-sample node routes samples). DALI seeds each op by its place
in the graph, so the batches of a seed depend on the exact ops and their wiring, not only on
what they compute.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any

from nvidia.dali import fn, types

from depthkit.loader import augment as aug
from depthkit.loader import gridwarp
from depthkit.loader.augment import AugmentConfig
from depthkit.loader.backgrounds import BackgroundBank
from depthkit.loader.photometric import IDENTITY
from depthkit.shard import schema

READER_NAME = "shards"
BGID = schema.FIELD_BY_EXT[schema.EXT_BGID]
READ_FIELDS = (*schema.IMAGE_FIELDS, BGID)  # what the reader hands out, in this order
OUTPUTS = (schema.BACKGROUND.name, *(f.name for f in schema.IMAGE_FIELDS), BGID.name,
           "color", "grid")
_DECODE_TYPE = {"RGB": types.RGB, "L": types.GRAY}  # Pillow mode -> DALI decoder output


@dataclass(frozen=True)
class GraphSpec:
    """Everything the pipeline definition needs (built once per loader)."""

    tars: list[str]
    indexes: list[str]
    res: int
    augment: AugmentConfig | None
    gpu: bool
    shuffle: bool
    shuffle_buffer: int
    rank: int
    world_size: int
    bank: BackgroundBank
    bg_bank: bool
    norm: dict[str, dict[str, list[float]]]
    mmap: bool = False  # LoaderConfig.mmap: memory-map the tars instead of reading them


def read(g: GraphSpec) -> dict[str, Any]:
    """The webdataset reader: encoded images and the bgid of each sample, by field name."""
    nodes = fn.readers.webdataset(
        paths=g.tars,
        index_paths=g.indexes,
        ext=[f.ext for f in READ_FIELDS],
        dtypes=[getattr(types, f.dali_dtype) for f in READ_FIELDS],
        missing_component_behavior="error",
        shard_id=g.rank,
        num_shards=g.world_size,
        random_shuffle=g.shuffle,
        initial_fill=g.shuffle_buffer,
        pad_last_batch=True,
        dont_use_mmap=not g.mmap,
        name=READER_NAME,
    )
    return {f.name: nodes[i] for i, f in enumerate(READ_FIELDS)}


def decode(encoded: Any, field: schema.Field, gpu: bool) -> Any:
    """One image component decoded to uint8 HWC (RGB or gray by its Pillow mode)."""
    device = "mixed" if gpu else "cpu"
    return fn.decoders.image(encoded, device=device, output_type=_DECODE_TYPE[field.mode])


def background(bgid: Any, g: GraphSpec) -> Any:
    """Each sample's background, joined by id: decoded once per loader, or again per sample."""
    if g.bg_bank:
        bg = fn.python_function(
            bgid, function=g.bank.lookup, batch_processing=True, output_layouts="HWC"
        )
        bg = bg.gpu() if g.gpu else bg
    else:
        encoded = fn.python_function(bgid, function=g.bank.lookup_encoded, batch_processing=True)
        bg = decode(encoded, schema.BACKGROUND, g.gpu)
    return bg


def draw_geometry(resize_flags: list[Any], g: GraphSpec) -> tuple[Any, Any, Any]:
    """(matrix, warp, smooth): the sample's geometry (identity when none is drawn), whether
    any image needs a warp, and whether it needs interpolation (a resize or shift-scale-rotate
    rather than a flip / rotate-90 permutation)."""
    warp = functools.reduce(operator.or_, resize_flags)
    smooth = warp
    if g.augment is not None and g.augment.any_geometry:
        matrix, drawn, ssr = aug.dali_geometry(g.augment, g.res)
        warp = warp | drawn
        smooth = smooth | ssr
    else:
        matrix = fn.transforms.scale(scale=[1.0, 1.0])  # identity
    return matrix, warp, smooth


def warp_images(pairs: tuple[tuple[Any, Any], ...], res: int, nearest: bool) -> tuple[Any, ...]:
    """Each (image, matrix) pair warped to res x res, all with one interpolation."""
    return tuple(aug.dali_warp(image, matrix, res, nearest=nearest) for image, matrix in pairs)


def geometry(images: dict[str, Any], shapes: dict[str, Any], g: GraphSpec) -> dict[str, Any]:
    """ONE geometry per sample for all four images: each image's matrix is its resize to res
    (shapes: the stored fgbg, mask, depth sizes; bg is res already) then the drawn geometry.
    The mask is always sampled nearest; bg, fgbg and depth bilinearly unless nearest is exact.
    """
    bg, fgbg, mask, depth = (images[k] for k in ("bg", "fgbg", "mask", "depth"))
    resizes = {k: aug.dali_resize_matrix(shapes[k], g.res) for k in ("fgbg", "mask", "depth")}
    matrix, warp, smooth = draw_geometry([r[1] for r in resizes.values()], g)
    if warp:
        m_fgbg, m_mask, m_depth = (fn.transforms.combine(r[0], matrix) for r in resizes.values())
        if smooth:
            bg, fgbg, depth = warp_images(
                ((bg, matrix), (fgbg, m_fgbg), (depth, m_depth)), g.res, nearest=False)
        else:  # flip / rotate-90 only: pixel centres land on pixel centres
            bg, fgbg, depth = warp_images(
                ((bg, matrix), (fgbg, m_fgbg), (depth, m_depth)), g.res, nearest=True)
        mask = aug.dali_warp(mask, m_mask, g.res, nearest=True)
    return {"bg": bg, "fgbg": fgbg, "mask": mask, "depth": depth}


def color_params(augment: AugmentConfig | None) -> Any:
    """Per-sample colour draw (float (4,)); IDENTITY for every sample without colour ops."""
    if augment is not None and augment.any_color:
        return aug.dali_color(augment)
    return fn.constant(fdata=list(IDENTITY), dtype=types.FLOAT)


def grid_params(augment: AugmentConfig | None) -> tuple[Any, Any]:
    """(per-sample grid draw (float (2, steps)), drawn flag or None); zeros without grid ops."""
    if augment is not None and augment.p_grid > 0:
        return aug.dali_grid(augment)
    return fn.constant(fdata=[0.0, 0.0], shape=[2, 1], dtype=types.FLOAT), None


def grid_on_cpu(images: dict[str, Any], grid: Any, distort: Any) -> dict[str, Any]:
    """Grid-distort uint8 HWC inside DALI, for the samples that drew it (the CPU backend: cheap
    here; the GPU backend does it in torch after the pipeline, batched)."""
    bg, fgbg, mask, depth = (images[k] for k in ("bg", "fgbg", "mask", "depth"))
    if distort:
        bg, fgbg, mask, depth = fn.python_function(
            bg, fgbg, mask, depth, grid, function=gridwarp.grid_distort_batch,
            num_outputs=4, batch_processing=True, output_layouts=["HWC"] * 4,
        )
    return {"bg": bg, "fgbg": fgbg, "mask": mask, "depth": depth}


def scale_image(image: Any, field: schema.Field, norm: dict[str, dict[str, list[float]]]) -> Any:
    """An image's final DALI form by its field's scale: stats-normalised or /255 float CHW, or
    (binary) uint8 CHW, thresholded at MASK_THRESHOLD_U8 in torch."""
    if field.scale == "stats":
        stats = norm[field.name]
        return fn.crop_mirror_normalize(
            image,
            dtype=types.FLOAT,
            output_layout="CHW",
            mean=[255.0 * m for m in stats["mean"]],
            std=[255.0 * s for s in stats["std"]],
        )
    if field.scale == "unit":
        return fn.crop_mirror_normalize(image, dtype=types.FLOAT, output_layout="CHW", std=[255.0])
    if field.scale == "binary":
        return fn.transpose(image, perm=[2, 0, 1])
    raise ValueError(f"field {field.name!r} has no image scale ({field.scale!r})")


def define(g: GraphSpec) -> tuple[Any, ...]:
    """The pipeline definition: the nodes named in OUTPUTS."""
    encoded = read(g)
    shapes = {f.name: fn.peek_image_shape(encoded[f.name]) for f in schema.IMAGE_FIELDS}
    images = {f.name: decode(encoded[f.name], f, g.gpu) for f in schema.IMAGE_FIELDS}
    images["bg"] = background(encoded[BGID.name], g)
    images = geometry(images, shapes, g)
    color = color_params(g.augment)
    grid, distort = grid_params(g.augment)
    if distort is not None and not g.gpu:
        images = grid_on_cpu(images, grid, distort)
    out = {f.name: scale_image(images[f.name], f, g.norm)
           for f in (schema.BACKGROUND, *schema.IMAGE_FIELDS)}
    out.update({BGID.name: encoded[BGID.name], "color": color, "grid": grid})
    return tuple(out[name] for name in OUTPUTS)
