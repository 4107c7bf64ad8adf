"""ROI heatmaps (FocusCLIP, arXiv 2403.06904): where the people are, as a soft mask in [0, 1].

Per person, a 2-D Gaussian centred on the box of the known keypoints with standard deviations equal to
half the box's width and height; summed over people and clipped to [0, 1]. The body-part variant puts
one such blob on each body part (head, torso, upper/lower arms and legs) instead of the whole person.

Both the NumPy and the torch versions are vectorised over people and pixels (separable Gaussians: one
outer product per blob), take keypoints in source-image pixels and render at any output size:

    hm = roi_heatmap(ann.keypoints, image_size=(w, h), out_size=(224, 224))   # (224, 224) float32
    hm = roi_heatmap_torch(kps, image_sizes, out_size=(224, 224))   # (B, 224, 224), on kps.device
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.geometry import (
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    PELVIS,
    R_ANKLE,
    R_ELBOW,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    THORAX,
)
from pipeline.records import keypoint_boxes, known

# A blob never gets narrower than this fraction of the output's larger side (a lone keypoint, or a limb
# seen end-on, would otherwise give a zero-width Gaussian).
MIN_SIGMA_FRAC = 0.02

BODY_PARTS: dict[str, tuple[int, ...]] = {
    "head": (NECK, HEAD),
    "torso": (THORAX, PELVIS, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP),
    "left upper arm": (L_SHOULDER, L_ELBOW),
    "left forearm": (L_ELBOW, L_WRIST),
    "right upper arm": (R_SHOULDER, R_ELBOW),
    "right forearm": (R_ELBOW, R_WRIST),
    "left thigh": (L_HIP, L_KNEE),
    "left shin": (L_KNEE, L_ANKLE),
    "right thigh": (R_HIP, R_KNEE),
    "right shin": (R_KNEE, R_ANKLE),
}
_PART_MASK = np.zeros((len(BODY_PARTS), 16), dtype=bool)
for _i, _joints in enumerate(BODY_PARTS.values()):
    _PART_MASK[_i, list(_joints)] = True


def _boxes_np(kps: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) of known joints per person (or per person and part) and a validity mask (N,); the
    whole-person boxes work for any skeleton's (P, K, 3), the parts need MPII's 16 joints."""
    kps = np.asarray(kps, dtype=np.float32)
    kps = kps.reshape(-1, kps.shape[-2], 3)
    ok = known(kps)  # (P, K)
    if groups is not None:
        ok = ok[:, None, :] & groups[None, :, :]  # (P, G, 16)
        kps = np.broadcast_to(kps[:, None], (kps.shape[0], groups.shape[0], 16, 3))
        ok, kps = ok.reshape(-1, 16), kps.reshape(-1, 16, 3)
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


def roi_heatmap(
    keypoints: np.ndarray,
    image_size: tuple[float, float],
    out_size: tuple[int, int] | None = None,
    *,
    parts: bool = False,
) -> np.ndarray:
    """Heatmap (H, W) float32 in [0, 1] for one image.

    keypoints: (P, 16, 3) in source pixels (P may be 0); image_size: (width, height) of the source image;
    out_size: (width, height) to render at (default: the source size); parts: one blob per body part.
    """
    out_size = out_size or (int(round(image_size[0])), int(round(image_size[1])))
    boxes, valid = _boxes_np(keypoints, _PART_MASK if parts else None)
    return _render_np(boxes, valid, image_size, out_size)


def roi_heatmap_torch(
    keypoints: torch.Tensor, image_sizes: torch.Tensor, out_size: tuple[int, int], *, parts: bool = False
) -> torch.Tensor:
    """Batched heatmaps (B, H, W) on keypoints.device.

    keypoints: (B, P, 16, 3), people padded with v = 0 rows; image_sizes: (B, 2) source (width, height);
    out_size: (width, height).
    """
    b, p = keypoints.shape[:2]
    dev = keypoints.device
    kps = keypoints.float()
    ok = (kps[..., 2] > 0) & torch.isfinite(kps[..., 0]) & torch.isfinite(kps[..., 1])  # (B, P, 16)
    if parts:
        mask = torch.as_tensor(_PART_MASK, device=dev)
        ok = ok[:, :, None, :] & mask[None, None]  # (B, P, G, 16)
        kps = kps[:, :, None].expand(b, p, mask.shape[0], 16, 3)
        ok, kps = ok.reshape(b, -1, 16), kps.reshape(b, -1, 16, 3)
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
    """Stack per-image (P_i, 16, 3) arrays into (B, P, 16, 3), padding with v = 0 people."""
    p = max_people or max((k.shape[0] for k in keypoints), default=0)
    out = np.zeros((len(keypoints), max(p, 1), 16, 3), dtype=np.float32)
    out[..., :2] = np.nan
    for i, k in enumerate(keypoints):
        k = np.asarray(k, dtype=np.float32).reshape(-1, 16, 3)[:p]
        out[i, : k.shape[0]] = k
    return out


def to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """8-bit grayscale encoding used in the published dataset."""
    return np.round(np.clip(heatmap, 0.0, 1.0) * 255.0).astype(np.uint8)
