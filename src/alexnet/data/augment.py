"""Training and evaluation views, batched on the device (§2, §4.1).

Input: uint8 (B, S, S, 3) batches as the loader yields them (S = the store's size, 256 in
the paper). Output: float (B, 3, crop, crop) tensors in channels_last memory, ready for a
channels_last model under bf16 autocast. Everything is whole-batch tensor work (no loop over
images), so it runs on the GPU when the batch is there, and vectorised on the CPU.

- Training (§4.1): a random crop x crop patch (224 of 256) and, with probability 1/2, its
  horizontal reflection; PCA lighting: add ``eigvec @ (alpha * eigval)`` to every pixel,
  alpha ~ N(0, 0.1) drawn per image per use.
- Normalisation: the paper's mean image subtraction (§2: the per-pixel mean of the training
  set, cropped and flipped with the image), or torchvision-style per-channel
  ``(x - mean) / std`` with the dataset's own mean/std ("channel") or torchvision's ImageNet
  constants ("imagenet", for torchvision's pretrained weights).
- Scale augmentation (not the paper's; off unless ``resized_crop_scale`` > 0): torchvision's
  RandomResizedCrop instead of the fixed-size crop, a box covering U(scale, 1) of the image's
  area at an aspect ratio log-uniform in [3/4, 4/3], resized to crop x crop (bilinear, as
  torchvision with ``antialias=False``; boxes here shrink by at most 256/224, where
  antialiasing changes little).
- Evaluation: the centre crop, or the paper's 10 patches (4 corners + centre, and their
  reflections) in exactly the order and positions of torchvision.transforms.TenCrop.

Crops are cut with one row gather (a window row is contiguous in memory), and every float
pass runs in place on per-thread workspaces, because on the CPU fresh 77 MB tensors cost
more in page faults than the arithmetic. Instances are safe to call from several threads
(the StoreLoader's reader threads do, with ``transform=``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from alexnet.data.store import StoreStats
from alexnet.errors import AlexNetError, unknown_choice

# torchvision's ImageNet per-channel normalisation, in 0..255 pixel units
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
NORMALIZATIONS = ("mean_image", "channel", "imagenet")
VIEWS = ("center", "ten_crop")
# PCA lighting units (docs/data.md): "fb_resnet" scales by eigval / 255 (the paper's formula
# on [0, 1] pixels, as fb.resnet.torch); "cuda_convnet" by sqrt(eigval), the component's
# standard deviation in 0..255 units, then divides the view by 1 + alpha std (the 2012 code)
LIGHTING_UNITS = ("fb_resnet", "cuda_convnet")


@dataclass(frozen=True)
class AugmentConfig:
    crop_size: int = 224  # §4.1: 224x224 patches of the 256x256 images
    flip: bool = True  # §4.1: horizontal reflections
    lighting_std: float = 0.1  # §4.1: alpha ~ N(0, 0.1); 0 switches PCA lighting off
    normalization: str = "mean_image"  # "mean_image" (§2) | "channel" | "imagenet"
    dtype: torch.dtype = torch.float32  # of the output; the arithmetic is float32
    # > 0: random-resized crops covering this..1 of the image's area (torchvision's scale
    # augmentation, not §4.1's); 0: the paper's fixed crop_size crops
    resized_crop_scale: float = 0.0
    lighting_units: str = "fb_resnet"  # LIGHTING_UNITS: which reading of §4.1's eigenvalues

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise unknown_choice("normalization", self.normalization, NORMALIZATIONS)
        if self.lighting_units not in LIGHTING_UNITS:
            raise unknown_choice("lighting_units", self.lighting_units, LIGHTING_UNITS)
        if not 0 <= self.resized_crop_scale <= 1:
            raise AlexNetError(f"resized_crop_scale must be in [0, 1] (0: the paper's fixed "
                               f"crops), got {self.resized_crop_scale}")
        if self.crop_size < 1 or self.lighting_std < 0:
            raise AlexNetError(f"crop_size must be >= 1 and lighting_std >= 0, got "
                               f"{self.crop_size} and {self.lighting_std}")


# ------------------------------------------------------------------------------ crops


def crop_views(images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,
               flips: torch.Tensor, crop: int, image_index: torch.Tensor | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Crop view v of image ``image_index[v]`` at (``tops[v]``, ``lefts[v]``), mirrored where
    ``flips[v]``: (B, S, S, C) -> (V, crop, crop, C), same dtype, contiguous (into ``out``)."""
    views = gather_windows(images, image_index, tops, lefts, crop, out)
    return _mirror_views(views, flips)


def gather_windows(images: torch.Tensor, image_index: torch.Tensor | None, tops: torch.Tensor,
                   lefts: torch.Tensor, crop: int, out: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Unmirrored windows (V, crop, crop, C) with one row gather.

    A window row is ``crop * C`` contiguous values of an image row, so the batch is viewed
    as overlapping rows (one starting at every pixel) and ``index_select`` copies V * crop of
    them; measured 2x faster than indexing an unfolded view (9 vs 17-21 ms for 128 x 224^2).
    """
    batch, size, width, channels = images.shape
    if crop > size or width != size:
        raise AlexNetError(f"crop {crop} does not fit images of {size}x{width}")
    images = images.contiguous()
    if image_index is None:
        image_index = torch.arange(batch, device=images.device)
    rows = torch.arange(crop, device=images.device)
    starts = ((image_index[:, None] * size + tops[:, None] + rows) * size + lefts[:, None])
    row_view = images.as_strided((images.numel() // channels - crop + 1, crop * channels),
                                 (channels, 1))
    flat_out = None if out is None else out.view(-1, crop * channels)
    windows = torch.index_select(row_view, 0, starts.reshape(-1), out=flat_out)
    return windows.view(len(image_index), crop, crop, channels)


def _mirror_views(views: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror (in place) the views where ``flips``."""
    if views.device.type != "cpu":  # no host sync on accelerators; bandwidth is plentiful there
        return torch.where(flips[:, None, None, None], views.flip(2), views)
    chosen = flips.nonzero().squeeze(1)
    if len(chosen):
        # whole rows through index_select / index_put on a 2-D view: memcpy-like kernels
        # (4 + 6 ms for 64 of 128 x 224^2 views) where 4-D fancy indexing is element-wise
        crop, row = views.shape[1], views.shape[2] * views.shape[3]
        rows = (chosen[:, None] * crop + torch.arange(crop, device=views.device)).reshape(-1)
        flat = views.view(-1, row)
        mirrored = torch.index_select(flat, 0, rows).view(len(chosen), *views.shape[1:]).flip(2)
        flat.index_put_((rows,), mirrored.view(-1, row))
    return views


def _mirror_lefts(lefts: torch.Tensor, flips: torch.Tensor, size: int, crop: int) -> torch.Tensor:
    """flip(crop(x, top, left)) == crop(flip(x), top, size - crop - left)."""
    return torch.where(flips, size - crop - lefts, lefts)


def random_crop_flip(images: torch.Tensor, crop: int, generator: torch.Generator | None = None,
                     flip: bool = True) -> torch.Tensor:
    """§4.1: a random ``crop`` patch of each image, mirrored with probability 1/2.
    uint8 (B, S, S, 3) -> uint8 (B, crop, crop, 3)."""
    tops, lefts, flips = _random_boxes(images, crop, generator, flip)
    return crop_views(images, tops, lefts, flips, crop)


def _random_boxes(images: torch.Tensor, crop: int, generator: torch.Generator | None,
                  flip: bool, batch: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size, device = images.shape[1], images.device
    batch = images.shape[0] if batch is None else batch
    if crop > size:
        raise AlexNetError(f"crop {crop} is larger than the images ({size})")
    tops = torch.randint(0, size - crop + 1, (batch,), generator=generator, device=device)
    lefts = torch.randint(0, size - crop + 1, (batch,), generator=generator, device=device)
    if flip:
        flips = torch.rand(batch, generator=generator, device=device) < 0.5
    else:
        flips = torch.zeros(batch, dtype=torch.bool, device=device)
    return tops, lefts, flips


def center_boxes(size: int, crop: int) -> tuple[int, int]:
    """torchvision's center_crop offsets: int(round((size - crop) / 2)), half to even."""
    middle = round((size - crop) / 2.0)
    return middle, middle


def ten_crop_boxes(size: int, crop: int) -> list[tuple[int, int, bool]]:
    """(top, left, flipped) of the 10 patches, in torchvision.transforms.TenCrop's order:
    five_crop(image) then five_crop(hflip(image)); positions given in the unflipped image."""
    if crop > size:
        raise AlexNetError(f"crop {crop} is larger than the images ({size})")
    far = size - crop
    middle = center_boxes(size, crop)
    five = [(0, 0), (0, far), (far, 0), (far, far), middle]  # tl, tr, bl, br, centre
    # a crop at `left` of the mirrored image is the mirror of the crop at far - left
    return [(top, left, False) for top, left in five] + [(top, far - left, True) for top, left in five]


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> (B, crop, crop, 3): torchvision's CenterCrop."""
    top, left = center_boxes(images.shape[1], crop)
    return images[:, top:top + crop, left:left + crop].contiguous()


def ten_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> (10 B, crop, crop, 3), image-major: rows 10 b .. 10 b + 9 are
    torchvision's TenCrop of image b (so logits.view(B, 10, K).mean(1) averages them)."""
    tops, lefts, flips, index = _ten_crop_index(images.shape[0], images.shape[1], crop,
                                                images.device)
    return crop_views(images, tops, lefts, flips, crop, index)


def _ten_crop_index(batch: int, size: int, crop: int, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    boxes = torch.tensor([(top, left, int(flip)) for top, left, flip in ten_crop_boxes(size, crop)],
                         device=device)  # (10, 3)
    repeated = boxes.repeat(batch, 1)  # (10 B, 3), image-major
    index = torch.arange(batch, device=device).repeat_interleave(len(boxes))
    return repeated[:, 0], repeated[:, 1], repeated[:, 2].bool(), index


# ------------------------------------------------------------------ random-resized crops

RESIZED_CROP_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's aspect-ratio range
RESIZED_CROP_TRIES = 10  # as torchvision: boxes that do not fit are drawn again, 10 times


def random_resized_boxes(batch: int, size: int, min_scale: float,
                         generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for a batch of size x size images:
    (batch, 4) int64 boxes (top, left, height, width) covering U(min_scale, 1) of the area
    with a log-uniform aspect ratio in [3/4, 4/3]. Each image gets ten draws at once and
    keeps the first that fits; if none fits, the whole image (torchvision's fallback for a
    square image)."""
    if not 0 < min_scale <= 1:
        raise AlexNetError(f"the smallest box area must be in (0, 1] of the image, got {min_scale}")
    shape = (batch, RESIZED_CROP_TRIES)
    area = size * size * (min_scale + (1 - min_scale) * torch.rand(shape, generator=generator,
                                                                   device=device))
    low, high = (math.log(r) for r in RESIZED_CROP_RATIO)
    ratio = torch.exp(low + (high - low) * torch.rand(shape, generator=generator, device=device))
    widths = torch.sqrt(area * ratio).round().long()
    heights = torch.sqrt(area / ratio).round().long()
    fits = (widths >= 1) & (widths <= size) & (heights >= 1) & (heights <= size)
    first = fits.int().argmax(1, keepdim=True)  # the first True (0 when there is none)
    found = fits.any(1)
    width = torch.where(found, widths.gather(1, first).squeeze(1), size)
    height = torch.where(found, heights.gather(1, first).squeeze(1), size)
    # uniform integer positions, as torch.randint(0, size - side + 1) per image
    top = (torch.rand(batch, generator=generator, device=device) * (size - height + 1)).long()
    left = (torch.rand(batch, generator=generator, device=device) * (size - width + 1)).long()
    return torch.stack([top, left, height, width], 1)


def resized_crop_grid(boxes: torch.Tensor, flips: torch.Tensor, size: int, crop: int
                      ) -> torch.Tensor:
    """The ``grid_sample`` grid (B, crop, crop, 2) that resizes each box to crop x crop,
    mirrored where ``flips``: output pixel j samples box coordinate (j + 0.5) * side / crop,
    the pixel-centre convention of ``interpolate(align_corners=False)`` (torchvision's
    resize). The grid is separable, so it is built from two (B, crop) vectors."""
    boxes = boxes.to(torch.float32)
    steps = (torch.arange(crop, device=boxes.device, dtype=torch.float32) + 0.5) / crop
    across = torch.where(flips[:, None], 1 - steps, steps)  # a mirrored view reads right to left
    xs = (boxes[:, 1:2] + across * boxes[:, 3:4]) * (2 / size) - 1  # grid units: -1..1 = image
    ys = (boxes[:, 0:1] + steps * boxes[:, 2:3]) * (2 / size) - 1
    grid = torch.empty(len(boxes), crop, crop, 2, device=boxes.device)
    grid[..., 0] = xs[:, None, :]
    grid[..., 1] = ys[:, :, None]
    return grid


def resized_crops(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Float (B, S, S, C) images -> contiguous (B, C, crop, crop), bilinear at ``grid``.

    One batched ``grid_sample`` (every box has its own size, so no single ``interpolate``
    call fits; also runs unchanged on a GPU). Border padding clamps at the image edge, as
    a resize of a crop clamps at the crop's; the two differ only in the outermost
    half-pixel of a box that does not touch the image edge.
    """
    return F.grid_sample(images.permute(0, 3, 1, 2), grid, mode="bilinear",
                         padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------- lighting


def lighting_shift(batch: int, eigval: torch.Tensor, eigvec: torch.Tensor, alpha_std: float = 0.1,
                   generator: torch.Generator | None = None, units: str = "fb_resnet"
                   ) -> torch.Tensor:
    """§4.1: the RGB offset ``eigvec @ (alpha * lambda)`` of each image, (B, 3), 0..255 units.

    ``eigval`` are the eigenvalues of the covariance of 0..255 pixel values (stats.npz).
    ``units`` says what lambda is (docs/data.md derives both):

    - ``fb_resnet``: the paper's formula applied to pixels scaled to [0, 1], as the widely
      used implementations do (fb.resnet.torch: ImageNet eigval 0.2175, 0.0188, 0.0045), and
      the offset scaled back to 0..255: lambda = eigval / 255. Applied literally to 0..255
      pixels the offsets would be ~255x larger (hundreds of grey levels).
    - ``cuda_convnet``: the 2012 code (convdata.py ``color_stdevs``, convdata_jpeg.py
      ColorNoiseMakerThread): lambda = sqrt(eigval), the standard deviation of the pixels
      along that component, in 0..255 units whatever the pixel scale.
    """
    scale = lighting_component_std(eigval.to(eigvec.device), 1.0, units)
    alpha = torch.randn(batch, 3, generator=generator, device=eigvec.device) * alpha_std
    return (alpha * scale) @ eigvec.to(torch.float32).T  # (B, 3)


def lighting_component_std(eigval: torch.Tensor, alpha_std: float = 0.1,
                           units: str = "fb_resnet") -> torch.Tensor:
    """The standard deviation of the lighting shift along each eigenvector, in 0..255 grey
    levels (3,): alpha_std * eigval / 255 (fb_resnet) or alpha_std * sqrt(eigval)
    (cuda_convnet, before its 1 / (1 + alpha_std) rescale of the whole view)."""
    if units not in LIGHTING_UNITS:
        raise unknown_choice("lighting_units", units, LIGHTING_UNITS)
    eigval = torch.as_tensor(eigval).to(torch.float32)
    scale = eigval / 255.0 if units == "fb_resnet" else eigval.clamp_min(0).sqrt()
    return alpha_std * scale


def pca_lighting(images: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor,
                 alpha_std: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add a fresh PCA lighting offset to each float image (B, 3, H, W) in 0..255 units."""
    shift = lighting_shift(images.shape[0], eigval, eigvec.to(images.device), alpha_std, generator)
    return images + shift.to(images.dtype)[:, :, None, None]


# ---------------------------------------------------------------------- normalisation


@dataclass
class Normalization:
    """Pixel normalisation in 0..255 units: ``(x - mean) / std``.

    ``mean`` is the (S, S, 3) mean image for "mean_image" (std = 1 in the paper, §2; a
    checkpoint may carry another) or a (3,) channel mean; views take the mean image's crop
    at the same place, mirrored with the image.
    """

    kind: str
    mean: torch.Tensor  # (S, S, 3) or (3,), float32
    std: torch.Tensor  # (3,), float32
    _on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def from_stats(cls, kind: str, stats: StoreStats | None) -> Normalization:
        if kind not in NORMALIZATIONS:
            raise unknown_choice("normalization", kind, NORMALIZATIONS)
        if kind == "imagenet":
            return cls(kind, torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD))
        if stats is None:
            raise AlexNetError(f"normalization {kind!r} needs the store's stats.npz")
        if kind == "mean_image":
            return cls(kind, stats.mean_image.float(), torch.ones(3))
        return cls(kind, stats.channel_mean.float(), stats.channel_std.float().clamp_min(1e-3))

    @classmethod
    def from_preprocess(cls, preprocess: dict[str, Any]) -> Normalization:
        """From a checkpoint's ``preprocess`` (mean (3, S, S) or (3,), std (3,))."""
        mean = torch.as_tensor(preprocess["mean"], dtype=torch.float32)
        std = torch.as_tensor(preprocess.get("std", torch.ones(3)), dtype=torch.float32)
        if mean.dim() == 3:
            return cls("mean_image", mean.permute(1, 2, 0).contiguous(), std.reshape(3))
        return cls(str(preprocess.get("normalization", "channel")), mean.reshape(3), std.reshape(3))

    @property
    def image_size(self) -> int | None:
        """The image side a mean image fixes; None for per-channel normalisation."""
        return int(self.mean.shape[0]) if self.mean.dim() == 3 else None

    def check_size(self, size: int) -> None:
        if self.image_size is not None and self.image_size != size:
            raise AlexNetError(f"the mean image is {self.image_size}x{self.image_size} but the "
                               f"images are {size}x{size}: use the store the stats came from")

    def to_preprocess(self, crop_size: int, image_size: int | None = None) -> dict[str, Any]:
        """The checkpoint ``preprocess`` dict (alexnet.models.checkpoint) that rebuilds this."""
        per_pixel = self.mean.dim() == 3
        image_size = self.image_size or image_size
        if image_size is None:
            raise AlexNetError("per-channel normalisation: give the image size of the preprocess")
        return {
            "image_size": image_size,
            "crop_size": crop_size,
            "normalization": "mean_image" if per_pixel else "channel",
            "mean": self.mean.permute(2, 0, 1).contiguous() if per_pixel else self.mean.clone(),
            "std": self.std.clone(),
        }

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) on ``device``; the mean image stacked with its mirror, (2, S, S, 3)."""
        if device not in self._on_device:
            mean = self.mean.to(device)
            if mean.dim() == 3:
                mean = torch.stack([mean, mean.flip(1)])
            self._on_device[device] = (mean, (1.0 / self.std).to(device))
        return self._on_device[device]

    def apply(self, crops: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,
              flips: torch.Tensor, shift: torch.Tensor | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 views (V, c, c, 3) cut at (tops, lefts, flips) -> float32 (V, c, c, 3),
        normalised, plus the per-view RGB ``shift`` (V, 3) in pixel units if given.

        Every pass is in place on preallocated memory: on the CPU a fresh 77 MB tensor costs
        more in page faults than the arithmetic (36 vs 15 ms per 128 x 224^2 pass, measured).
        """
        mean, inverse_std = self._tensors(crops.device)
        views, crop = crops.shape[0], crops.shape[1]
        if out is None:
            out = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)
        rows = out.view(views, crop, crop * 3)  # (V, c, 3c): channel patterns tiled along rows
        if mean.dim() == 4:  # mean image: its crop at the same place, mirrored with the view
            mirrored = _mirror_lefts(lefts, flips, mean.shape[1], crop)
            mean_crops = gather_windows(mean, flips.long(), tops, mirrored, crop,
                                        out=self._workspace(crops))
            if shift is not None:  # x - (mean - shift): one pass less over the output
                mean_crops.view(views, crop, crop * 3).sub_(shift.repeat(1, crop)[:, None, :])
            out.copy_(crops)
            out.sub_(mean_crops)
            if bool((self.std != 1).any()):  # a checkpoint may scale (x - mean image) / std
                rows.mul_(inverse_std.repeat(crop))
            return out
        bias = -mean if shift is None else shift - mean  # (3,) or (V, 3)
        bias = (bias * inverse_std).reshape(-1, 3).repeat(1, crop)[:, None, :]  # (1|V, 1, 3c)
        out.copy_(crops)
        torch.addcmul(bias, rows, inverse_std.repeat(crop), out=rows)  # x / std + bias / std
        return out

    def inverse_std(self, device: torch.device) -> torch.Tensor:
        """1 / std (3,) on ``device``."""
        return self._tensors(device)[1]

    def apply_whole(self, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 whole images (B, S, S, 3) -> float32 ``(x - mean) / std`` (B, S, S, 3), the
        mean image unmoved: for views resampled afterwards (random-resized crops), which
        is the same as normalising the resampled views, as resampling is linear."""
        mean, inverse_std = self._tensors(images.device)
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device) if out is None \
            else out
        out.copy_(images)
        out.sub_(mean[0] if mean.dim() == 4 else mean)
        if bool((self.std != 1).any()):
            out.mul_(inverse_std)
        return out

    def _workspace(self, crops: torch.Tensor) -> torch.Tensor:
        """A float32 buffer shaped like ``crops``, kept between calls (one per thread)."""
        return _thread_buffer(self._local, "mean_crops", crops.shape, torch.float32, crops.device)


def _thread_buffer(local: threading.local, name: str, shape: torch.Size | tuple[int, ...],
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A workspace tensor of the calling thread, reallocated only when its shape changes."""
    buffer = getattr(local, name, None)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype or buffer.device != device:
        buffer = torch.empty(shape, dtype=dtype, device=device)
        setattr(local, name, buffer)
    return buffer


def _as_nhwc(out: torch.Tensor | None, crops: torch.Tensor) -> torch.Tensor | None:
    """A caller's channels_last (V, 3, c, c) float32 output as the (V, c, c, 3) it stores."""
    if out is None:
        return None
    expected = (crops.shape[0], crops.shape[3], crops.shape[1], crops.shape[2])
    if (tuple(out.shape) != expected or out.dtype != torch.float32 or out.device != crops.device
            or not out.is_contiguous(memory_format=torch.channels_last)):
        raise AlexNetError(f"out must be a float32 channels_last tensor of shape {expected} on "
                           f"{crops.device}, got {out.dtype} {tuple(out.shape)}")
    return out.permute(0, 2, 3, 1)


def _channels_last(views: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(V, c, c, 3) contiguous -> (V, 3, c, c) with channels_last strides (a view)."""
    out = views.permute(0, 3, 1, 2)
    return out if dtype == out.dtype else out.to(dtype, memory_format=torch.channels_last)


# ------------------------------------------------------------------------ the two views


class TrainAugment:
    """The paper's training view (§4.1) of a uint8 batch: ``augment(images, generator)``."""

    def __init__(self, stats: StoreStats | None, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        self.normalization = Normalization.from_stats(self.config.normalization, stats)
        if self.config.lighting_std > 0 and stats is None:
            raise AlexNetError("PCA lighting needs the store's stats.npz; set lighting_std=0")
        self.eigval = stats.pca_eigval.float() if stats is not None else torch.zeros(3)
        self.eigvec = stats.pca_eigvec.float() if stats is not None else torch.eye(3)
        self._eigen_on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._local = threading.local()  # workspaces, one set per calling thread

    accepts_index = True  # StoreLoader may pass the whole store and the batch's indices
    views_per_image = 1

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None,
                 out: torch.Tensor | None = None, index: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> float (B, 3, crop, crop), channels_last, on images.device.

        ``generator`` (on the images' device) makes the crops, flips and lighting
        reproducible; None uses torch's default generator of that device. ``out``, a float32
        channels_last (B, 3, crop, crop) tensor, is written instead of a new one (on the CPU
        this saves the page faults of a fresh 77 MB tensor, about a quarter of the time).
        With ``index`` (B,), ``images`` is a whole (N, S, S, 3) store and the batch is
        ``images[index]``: with fixed crops only the crop windows are read (77% of the bytes
        at 224 of 256).
        """
        config = self.config
        self.normalization.check_size(images.shape[1])
        batch = len(images) if index is None else len(index)
        if config.resized_crop_scale > 0:
            return self._random_resized_view(images, generator, out, index, batch)
        tops, lefts, flips = _random_boxes(images, config.crop_size, generator, config.flip, batch)
        crops = crop_views(images, tops, lefts, flips, config.crop_size, index,
                           out=self._crop_buffer(images, batch))
        shift = None
        if config.lighting_std > 0:
            eigval, eigvec = self._eigen(images.device)
            shift = lighting_shift(batch, eigval, eigvec, config.lighting_std, generator,
                                   config.lighting_units)
        result = self.normalization.apply(crops, tops, lefts, flips, shift, _as_nhwc(out, crops))
        if self.rescale != 1.0:
            result.mul_(self.rescale)
        return _channels_last(result, config.dtype)

    @property
    def rescale(self) -> float:
        """convdata_jpeg.py divides the noisy, mean-subtracted view by 1 + the noise std "so
        that the overall scale of the training data doesn't become too different from the
        test data"; only while the noise is on, and only in the 2012 code's units."""
        config = self.config
        if config.lighting_units == "cuda_convnet" and config.lighting_std > 0:
            return 1.0 / (1.0 + config.lighting_std)
        return 1.0

    def set_lighting_std(self, std: float) -> None:
        """Change the lighting alphas' std between epochs (the 2012 code switched its colour
        noise off for the low-rate phases, layer-params-145.cfg). Not while a loader reads."""
        self.config = dataclasses.replace(self.config, lighting_std=std)

    def _random_resized_view(self, images: torch.Tensor, generator: torch.Generator | None,
                             out: torch.Tensor | None, index: torch.Tensor | None, batch: int
                             ) -> torch.Tensor:
        """Scale augmentation: normalise the whole images, resample one random box each
        (mirrored with probability 1/2 when ``flip``), then add the PCA lighting offset.
        Reads whole images, not only crop windows as the fixed crops do."""
        config, size, device = self.config, images.shape[1], images.device
        if images.shape[2] != size:
            raise AlexNetError(f"random-resized crops need square images, got "
                               f"{size}x{images.shape[2]}")
        boxes = random_resized_boxes(batch, size, config.resized_crop_scale, generator, device)
        if config.flip:
            flips = torch.rand(batch, generator=generator, device=device) < 0.5
        else:
            flips = torch.zeros(batch, dtype=torch.bool, device=device)
        chosen = images if index is None else images.index_select(0, index)
        whole = _thread_buffer(self._local, "whole", chosen.shape, torch.float32, device)
        views = resized_crops(self.normalization.apply_whole(chosen, whole),
                              resized_crop_grid(boxes, flips, size, config.crop_size))
        if config.lighting_std > 0:
            eigval, eigvec = self._eigen(device)
            shift = lighting_shift(batch, eigval, eigvec, config.lighting_std, generator,
                                   config.lighting_units)
            views.add_((shift * self.normalization.inverse_std(device))[:, :, None, None])
        if self.rescale != 1.0:
            views.mul_(self.rescale)
        if out is not None:
            _as_nhwc(out, views.permute(0, 2, 3, 1))  # checks its shape, dtype and layout
            views = out.copy_(views)
        return views.to(config.dtype, memory_format=torch.channels_last)

    def _crop_buffer(self, images: torch.Tensor, batch: int) -> torch.Tensor:
        crop = self.config.crop_size
        shape = (batch, crop, crop, images.shape[3])
        return _thread_buffer(self._local, "crops", shape, images.dtype, images.device)

    def _eigen(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._eigen_on:
            self._eigen_on[device] = (self.eigval.to(device), self.eigvec.to(device))
        return self._eigen_on[device]

    def preprocess(self, image_size: int | None = None) -> dict[str, Any]:
        """What the evaluation views of a model trained with this need (checkpoint format);
        ``image_size`` is needed only for per-channel normalisation."""
        return self.normalization.to_preprocess(self.config.crop_size, image_size)


class EvalTransform:
    """Evaluation views of a uint8 batch: the centre crop, or the 10 patches (§4.1, §6)."""

    def __init__(self, normalization: Normalization, crop_size: int = 224, view: str = "center",
                 dtype: torch.dtype = torch.float32) -> None:
        if view not in VIEWS:
            raise unknown_choice("view", view, VIEWS)
        self.normalization, self.crop_size, self.view, self.dtype = normalization, crop_size, view, dtype

    @classmethod
    def from_stats(cls, stats: StoreStats | None, config: AugmentConfig | None = None,
                   view: str = "center") -> EvalTransform:
        config = config or AugmentConfig()
        return cls(Normalization.from_stats(config.normalization, stats), config.crop_size, view,
                   config.dtype)

    @classmethod
    def from_preprocess(cls, preprocess: dict[str, Any], view: str = "center") -> EvalTransform:
        return cls(Normalization.from_preprocess(preprocess), int(preprocess["crop_size"]), view)

    @property
    def views_per_image(self) -> int:
        return 10 if self.view == "ten_crop" else 1

    accepts_index = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None,
                 out: torch.Tensor | None = None, index: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> float (B * views, 3, crop, crop), channels_last, image-major
        (``out`` and ``index`` as for TrainAugment; ``generator`` is unused and accepted so
        that both can be a StoreLoader ``transform``)."""
        size, device = images.shape[1], images.device
        batch = len(images) if index is None else len(index)
        if index is None:
            index = torch.arange(batch, device=device)
        self.normalization.check_size(size)
        if self.view == "ten_crop":
            tops, lefts, flips, position = _ten_crop_index(batch, size, self.crop_size, device)
            index = index[position]
        else:
            top, left = center_boxes(size, self.crop_size)
            tops = torch.full((batch,), top, device=device)
            lefts = torch.full((batch,), left, device=device)
            flips = torch.zeros(batch, dtype=torch.bool, device=device)
        crops = crop_views(images, tops, lefts, flips, self.crop_size, index)
        result = self.normalization.apply(crops, tops, lefts, flips, None, _as_nhwc(out, crops))
        return _channels_last(result, self.dtype)

    def preprocess(self, image_size: int | None = None) -> dict[str, Any]:
        return self.normalization.to_preprocess(self.crop_size, image_size)
