"""The per-sample DALI graph, one stage per function, composed by `define`.

Per sample::

    read (fgbg, mask, depth, bgid) --background join by id--> bg
    decode -> every random parameter (geometry matrix, grid, colour) from one vector of
              uniforms per sample (depthkit.loader.augment.Draws)
           -> geometry: GPU: one affine warp per image where needed (conditionals), the grid
              in torch after the pipeline; CPU: resize, affine and grid of all four images in
              one numpy resampling per batch (depthkit.loader.cpuwarp)
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
from depthkit.loader.augment import AugmentConfig
from depthkit.loader.backgrounds import BackgroundBank
from depthkit.loader.cpuwarp import IMAGES, CpuWarp
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


def draws(augment: AugmentConfig | None, res: int) -> dict[str, Any]:
    """Every sample's random parameters by `augment.DRAWS` name; without augmentation the
    identity matrix, the IDENTITY colour and zero grid factors (and no drawn / ssr flags)."""
    if augment is not None:
        return aug.dali_draws(augment, res)
    return {"matrix": fn.transforms.scale(scale=[1.0, 1.0]), "drawn": None, "ssr": None,
            "color": fn.constant(fdata=list(IDENTITY), dtype=types.FLOAT),
            "grid": fn.constant(fdata=[0.0, 0.0], shape=[2, 1], dtype=types.FLOAT)}


def draw_geometry(resize_flags: list[Any], drawn: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(matrix, warp, smooth): the sample's geometry (identity when none is drawn), whether
    any image needs a warp, and whether it needs interpolation (a resize or shift-scale-rotate
    rather than a flip / rotate-90 permutation)."""
    warp = functools.reduce(operator.or_, resize_flags)
    smooth = warp
    if drawn["drawn"] is not None:
        warp = warp | drawn["drawn"]
        smooth = smooth | drawn["ssr"]
    return drawn["matrix"], warp, smooth


def warp_images(pairs: tuple[tuple[Any, Any], ...], res: int, nearest: bool) -> tuple[Any, ...]:
    """Each (image, matrix) pair warped to res x res, all with one interpolation."""
    return tuple(aug.dali_warp(image, matrix, res, nearest=nearest) for image, matrix in pairs)


def geometry(images: dict[str, Any], shapes: dict[str, Any], drawn: dict[str, Any],
             res: int) -> dict[str, Any]:
    """The GPU backend's geometry, ONE per sample for all four images: each image's matrix is
    its resize to res (shapes: the stored fgbg, mask, depth sizes; bg is res already) then the
    drawn one. The mask is always sampled nearest; bg, fgbg and depth bilinearly unless nearest
    is exact; samples that need no warp are routed around it (conditionals)."""
    bg, fgbg, mask, depth = (images[k] for k in ("bg", "fgbg", "mask", "depth"))
    resizes = {k: aug.dali_resize_matrix(shapes[k], res) for k in ("fgbg", "mask", "depth")}
    matrix, warp, smooth = draw_geometry([r[1] for r in resizes.values()], drawn)
    if warp:
        m_fgbg, m_mask, m_depth = (fn.transforms.combine(r[0], matrix) for r in resizes.values())
        if smooth:
            bg, fgbg, depth = warp_images(
                ((bg, matrix), (fgbg, m_fgbg), (depth, m_depth)), res, nearest=False)
        else:  # flip / rotate-90 only: pixel centres land on pixel centres
            bg, fgbg, depth = warp_images(
                ((bg, matrix), (fgbg, m_fgbg), (depth, m_depth)), res, nearest=True)
        mask = aug.dali_warp(mask, m_mask, res, nearest=True)
    return {"bg": bg, "fgbg": fgbg, "mask": mask, "depth": depth}


def geometry_on_cpu(images: dict[str, Any], drawn: dict[str, Any], res: int) -> dict[str, Any]:
    """The CPU backend's geometry: every sample's resize, affine matrix and grid draw applied to
    its four images in one numpy call per batch (bilinear; the mask nearest)."""
    warped = fn.python_function(
        *(images[k] for k in IMAGES), drawn["matrix"], drawn["grid"], function=CpuWarp(res),
        num_outputs=len(IMAGES), batch_processing=True, output_layouts=["HWC"] * len(IMAGES),
    )
    return {k: warped[i] for i, k in enumerate(IMAGES)}


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
    if g.gpu:
        shapes = {f.name: fn.peek_image_shape(encoded[f.name]) for f in schema.IMAGE_FIELDS}
    images = {f.name: decode(encoded[f.name], f, g.gpu) for f in schema.IMAGE_FIELDS}
    images["bg"] = background(encoded[BGID.name], g)
    drawn = draws(g.augment, g.res)
    if g.gpu:
        images = geometry(images, shapes, drawn, g.res)
    else:
        images = geometry_on_cpu(images, drawn, g.res)
    out = {f.name: scale_image(images[f.name], f, g.norm)
           for f in (schema.BACKGROUND, *schema.IMAGE_FIELDS)}
    out.update({BGID.name: encoded[BGID.name], "color": drawn["color"], "grid": drawn["grid"]})
    return tuple(out[name] for name in OUTPUTS)
