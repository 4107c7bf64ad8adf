"""ROI heatmaps (FocusCLIP, arXiv 2403.06904): where the people (or animals) are, as a soft mask in [0, 1].

Per instance, a 2-D Gaussian centred on the box of the known keypoints with standard deviations equal to
half the box's width and height; summed over instances and clipped to [0, 1]. The body-part variant puts
one such blob on each body part of the skeleton (pipeline.skeletons: head, torso, upper/lower arms and legs
for people) instead of the whole instance. Keypoints are (P, K, 3) of any skeleton: the whole-instance blob
needs no joint names.

Two other ROI sources, for COCO-format data: the instance box (the source's bbox, through the same Gaussian
rule) and the instance mask (the COCO segmentation decoded by pycocotools, the union of the instances,
area-averaged to the output size so edges are fractional and values stay in [0, 1]).

The keypoint versions, NumPy and torch, are vectorised over instances and pixels (separable Gaussians: one
outer product per blob), take keypoints in source-image pixels and render at any output size:

    hm = roi_heatmap(ann.keypoints, image_size=(w, h), out_size=(224, 224))   # (224, 224) float32
    hm = roi_heatmap_torch(kps, image_sizes, out_size=(224, 224))   # (B, 224, 224), on kps.device
    hm = instance_heatmap(kps, boxes, segmentations, image_size=(w, h))   # keypoints, boxes and masks
    png = PNG_ENCODERS["pillow"](to_uint8(hm), 1)   # the 8-bit grayscale PNG the dataset stores
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.bounds import segmentation_problem
from pipeline.records import keypoint_boxes, known
from pipeline.skeletons import MPII, Skeleton

# A blob never gets narrower than this fraction of the output's larger side (a lone keypoint, or a limb
# seen end-on, would otherwise give a zero-width Gaussian).
MIN_SIGMA_FRAC = 0.02


def part_mask(skeleton: Skeleton) -> np.ndarray:
    """(G, K) bool: which joints make up each of the skeleton's body parts, in skeleton.parts order."""
    if not skeleton.parts:
        raise ValueError(f"the {skeleton.name} skeleton defines no body parts (the part heatmap needs them)")
    mask = np.zeros((len(skeleton.parts), skeleton.num_joints), dtype=bool)
    for i, joints in enumerate(skeleton.parts.values()):
        mask[i, list(joints)] = True
    return mask


def _boxes_np(kps: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) of known joints per instance (or per instance and part) and a validity mask (N,)."""
    kps = np.asarray(kps, dtype=np.float32)
    k = kps.shape[-2]
    kps = kps.reshape(-1, k, 3)
    ok = known(kps)  # (P, K)
    if groups is not None:
        if groups.shape[1] != k:
            raise ValueError(f"keypoints have {k} joints, the body parts are defined on {groups.shape[1]}")
        ok = ok[:, None, :] & groups[None, :, :]  # (P, G, K)
        kps = np.broadcast_to(kps[:, None], (kps.shape[0], groups.shape[0], k, 3))
        ok, kps = ok.reshape(-1, k), kps.reshape(-1, k, 3)
    return keypoint_boxes(kps, ok)


def _render_np(
    boxes: np.ndarray, valid: np.ndarray, image_size: tuple[float, float], out_size: tuple[int, int]
) -> np.ndarray:
    w_img, h_img = image_size
    w_out, h_out = out_size
    sx, sy = w_out / float(w_img), h_out / float(h_img)
    boxes, n = boxes[valid], int(valid.sum())
    if n == 0:
        return np.zeros((h_out, w_out), dtype=np.float32)
    min_sigma = MIN_SIGMA_FRAC * max(w_out, h_out)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 * sx
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 * sy
    sig_x = np.maximum((boxes[:, 2] - boxes[:, 0]) / 2 * sx, min_sigma)
    sig_y = np.maximum((boxes[:, 3] - boxes[:, 1]) / 2 * sy, min_sigma)
    # Pixel centres at +0.5 so the output grid samples the same places at every resolution.
    xs = np.arange(w_out, dtype=np.float32) + 0.5
    ys = np.arange(h_out, dtype=np.float32) + 0.5
    gx = np.exp(-0.5 * ((xs[None, :] - cx[:, None]) / sig_x[:, None]) ** 2)  # (N, W)
    gy = np.exp(-0.5 * ((ys[None, :] - cy[:, None]) / sig_y[:, None]) ** 2)  # (N, H)
    hm = (gy.T @ gx).astype(
        np.float32, copy=False
    )  # (H, W): sum over blobs of separable Gaussians, one BLAS call
    return np.clip(hm, 0.0, 1.0, out=hm)


def _default_size(image_size: tuple[float, float], out_size: tuple[int, int] | None) -> tuple[int, int]:
    return out_size or (int(round(image_size[0])), int(round(image_size[1])))


def roi_heatmap(
    keypoints: np.ndarray,
    image_size: tuple[float, float],
    out_size: tuple[int, int] | None = None,
    *,
    parts: bool = False,
    skeleton: Skeleton = MPII,
) -> np.ndarray:
    """Heatmap (H, W) float32 in [0, 1] for one image.

    keypoints: (P, K, 3) in source pixels (P may be 0); image_size: (width, height) of the source image;
    out_size: (width, height) to render at (default: the source size); parts: one blob per body part of
    `skeleton` (which must be the keypoints' own).
    """
    boxes, valid = _boxes_np(keypoints, part_mask(skeleton) if parts else None)
    return _render_np(boxes, valid, image_size, _default_size(image_size, out_size))


def decode_mask(segmentation: str, size: tuple[int, int]) -> np.ndarray:
    """One COCO segmentation (JSON text: polygons, or RLE with compressed or uncompressed counts) as a
    (height, width) uint8 0/1 mask on an image of size (width, height); ValueError, before pycocotools sees
    it, when it does not fit that image (pipeline.bounds: an RLE of another size, runs that do not add
    up, coordinates far off the image). Decoded as pycocotools' COCO.annToRLE does."""
    from pycocotools import mask as mask_utils  # imported here: only the mask ROI needs it

    problem = segmentation_problem(segmentation, size)
    if problem is not None:
        raise ValueError(problem.detail)
    w, h = size
    seg = json.loads(segmentation)
    if isinstance(seg, list):  # polygons: one RLE each, merged into one
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):  # uncompressed RLE (COCO's crowd regions)
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = {"size": [h, w], "counts": seg["counts"].encode()}
    return mask_utils.decode(rle)


def mask_heatmap(
    segmentations: Sequence[str], image_size: tuple[int, int], out_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Union of the instances' masks, decoded at the source size (width, height) and resized to out_size by
    area averaging: (H, W) float32 in [0, 1], 1 inside, 0 outside, the covered fraction on the edges."""
    w, h = image_size
    union = np.zeros((h, w), dtype=np.uint8)
    for seg in segmentations:
        np.maximum(union, decode_mask(seg, (w, h)), out=union)
    out_size = _default_size(image_size, out_size)
    if out_size == (w, h):
        return union.astype(np.float32)
    resized = Image.fromarray(union.astype(np.float32)).resize(out_size, Image.Resampling.BOX)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def instance_heatmap(
    keypoints: np.ndarray,
    boxes: np.ndarray,
    segmentations: Sequence[str],
    image_size: tuple[float, float],
    out_size: tuple[int, int] | None = None,
    *,
    mask_size: tuple[int, int] | None = None,
    parts: bool = False,
    skeleton: Skeleton = MPII,
) -> np.ndarray:
    """The ROI of an image whose instances each give their region one way: keypoints (P, K, 3) -> the paper's
    blob (one per body part with `parts`), boxes (B, 4) -> the same blob on the box, segmentations -> the
    mask. The blobs are summed and clipped as in the paper; the mask union is laid over them (maximum).

    keypoints and boxes are in image_size pixels; masks are decoded at mask_size (the size their coordinates
    refer to; default image_size) and area-averaged to the output size.
    """
    out_size = _default_size(image_size, out_size)
    kp_boxes, valid = _boxes_np(keypoints, part_mask(skeleton) if parts else None)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes):
        kp_boxes = np.concatenate([kp_boxes, boxes])
        valid = np.concatenate([valid, np.ones(len(boxes), dtype=bool)])
    hm = _render_np(kp_boxes, valid, image_size, out_size)
    if segmentations:
        mask_size = mask_size or _default_size(image_size, None)
        np.maximum(hm, mask_heatmap(segmentations, mask_size, out_size), out=hm)
    return hm


def roi_heatmap_torch(
    keypoints: torch.Tensor,
    image_sizes: torch.Tensor,
    out_size: tuple[int, int],
    *,
    parts: bool = False,
    skeleton: Skeleton = MPII,
) -> torch.Tensor:
    """Batched heatmaps (B, H, W) on keypoints.device.

    keypoints: (B, P, K, 3), instances padded with v = 0 rows; image_sizes: (B, 2) source (width, height);
    out_size: (width, height); parts: one blob per body part of `skeleton`.
    """
    b, p, k = keypoints.shape[:3]
    dev = keypoints.device
    kps = keypoints.float()
    ok = (kps[..., 2] > 0) & torch.isfinite(kps[..., 0]) & torch.isfinite(kps[..., 1])  # (B, P, K)
    if parts:
        mask = torch.as_tensor(part_mask(skeleton), device=dev)
        if mask.shape[1] != k:
            raise ValueError(f"keypoints have {k} joints, the body parts are defined on {mask.shape[1]}")
        ok = ok[:, :, None, :] & mask[None, None]  # (B, P, G, K)
        kps = kps[:, :, None].expand(b, p, mask.shape[0], k, 3)
        ok, kps = ok.reshape(b, -1, k), kps.reshape(b, -1, k, 3)
    big = torch.finfo(torch.float32).max
    x = torch.nan_to_num(kps[..., 0], nan=0.0)
    y = torch.nan_to_num(kps[..., 1], nan=0.0)
    x1 = torch.where(ok, x, big).amin(-1)
    y1 = torch.where(ok, y, big).amin(-1)
    x2 = torch.where(ok, x, -big).amax(-1)
    y2 = torch.where(ok, y, -big).amax(-1)
    valid = ok.any(-1)  # (B, N)
    w_out, h_out = out_size
    sizes = image_sizes.to(dev, torch.float32)
    sx = (w_out / sizes[:, 0])[:, None]
    sy = (h_out / sizes[:, 1])[:, None]
    min_sigma = MIN_SIGMA_FRAC * max(w_out, h_out)
    zero = torch.zeros((), device=dev)
    cx = torch.where(valid, (x1 + x2) / 2 * sx, zero)
    cy = torch.where(valid, (y1 + y2) / 2 * sy, zero)
    sig_x = torch.where(valid, ((x2 - x1) / 2 * sx).clamp_min(min_sigma), torch.ones((), device=dev))
    sig_y = torch.where(valid, ((y2 - y1) / 2 * sy).clamp_min(min_sigma), torch.ones((), device=dev))
    xs = torch.arange(w_out, device=dev, dtype=torch.float32) + 0.5
    ys = torch.arange(h_out, device=dev, dtype=torch.float32) + 0.5
    gx = torch.exp(-0.5 * ((xs[None, None] - cx[..., None]) / sig_x[..., None]) ** 2)  # (B, N, W)
    gy = torch.exp(-0.5 * ((ys[None, None] - cy[..., None]) / sig_y[..., None]) ** 2)  # (B, N, H)
    gy = gy * valid[..., None]
    hm = torch.einsum("bnh,bnw->bhw", gy, gx)
    return hm.clamp_(0.0, 1.0)


def pad_people(keypoints: list[np.ndarray], max_people: int | None = None) -> np.ndarray:
    """Stack per-image (P_i, K, 3) arrays (one skeleton) into (B, P, K, 3), padding with v = 0 instances."""
    p = max_people or max((k.shape[0] for k in keypoints), default=0)
    num_joints = np.asarray(keypoints[0]).shape[-2] if keypoints else MPII.num_joints
    out = np.zeros((len(keypoints), max(p, 1), num_joints, 3), dtype=np.float32)
    out[..., :2] = np.nan
    for i, k in enumerate(keypoints):
        k = np.asarray(k, dtype=np.float32).reshape(-1, num_joints, 3)[:p]
        out[i, : k.shape[0]] = k
    return out


def to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """8-bit grayscale encoding used in the published dataset."""
    return np.round(np.clip(heatmap, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_pillow(pixels: np.ndarray, level: int = 1) -> bytes:
    """8-bit grayscale PNG of a (H, W) uint8 array, written by Pillow (zlib level `level`)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=level)  # uint8 (H, W): mode L
    return buf.getvalue()


def png_gray(pixels: np.ndarray, level: int = 1) -> bytes:
    """8-bit grayscale PNG of a (H, W) uint8 array, every row with the Sub filter.

    About 2.3x less CPU than Pillow at the same zlib level for smooth images like heatmaps (4.3 vs 10 ms per
    1280x720 map of real MPII people, files 16% larger): Pillow tries the filters per row, while Sub alone
    already turns a smooth ramp into small residuals that deflate well (zlib releases the GIL, so threads
    encode in parallel). The pixels decode identically; build-dataset --heatmap-encoder fast chooses it.
    """
    h, w = pixels.shape
    rows = np.empty((h, w + 1), dtype=np.uint8)
    rows[:, 0] = 1  # filter type Sub: each byte minus the one to its left, modulo 256
    rows[:, 1] = pixels[:, 0]
    np.subtract(pixels[:, 1:], pixels[:, :-1], out=rows[:, 2:])
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit, grayscale, deflate, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", ihdr),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


# build-dataset --heatmap-encoder: Pillow by default, the hand-written encoder when asked for
PNG_ENCODERS: dict[str, Callable[[np.ndarray, int], bytes]] = {"pillow": png_pillow, "fast": png_gray}
