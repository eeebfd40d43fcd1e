"""Batched views against torchvision and against a loop over images written out by hand."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms
from torchvision.transforms.v2 import functional as tvf

from alexnet.data.augment import (
    AugmentConfig,
    EvalTransform,
    Normalization,
    TrainAugment,
    _random_boxes,
    center_crop,
    lighting_shift,
    pca_lighting,
    random_crop_flip,
    random_resized_boxes,
    resized_crop_grid,
    resized_crops,
    ten_crop,
)
from alexnet.data.store import StoreStats
from alexnet.errors import AlexNetError
from data_helpers import fake_stats

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(count: int = 3, size: int = 20, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, size, size, 3), dtype=torch.uint8,
                         generator=generator).to(device)


@pytest.mark.parametrize(("size", "crop"), [(256, 224), (37, 24), (20, 20), (21, 8)])
def test_ten_crop_equals_torchvision(size: int, crop: int) -> None:
    images = batch(2, size)
    ours = ten_crop(images, crop)  # (20, crop, crop, 3)
    assert ours.shape == (20, crop, crop, 3)
    for b in range(2):
        expected = transforms.TenCrop(crop)(images[b].permute(2, 0, 1))
        for k in range(10):
            assert torch.equal(ours[10 * b + k].permute(2, 0, 1), expected[k]), (b, k)


@pytest.mark.parametrize(("size", "crop"), [(256, 224), (37, 24)])
def test_center_crop_equals_torchvision(size: int, crop: int) -> None:
    images = batch(2, size)
    expected = transforms.CenterCrop(crop)(images.permute(0, 3, 1, 2))
    assert torch.equal(center_crop(images, crop).permute(0, 3, 1, 2), expected)


def test_random_crop_flip_cuts_real_patches_and_both_reflections() -> None:
    images = batch(64, 12)
    crops = random_crop_flip(images, 8, torch.Generator().manual_seed(3))
    again = random_crop_flip(images, 8, torch.Generator().manual_seed(3))
    assert torch.equal(crops, again)  # reproducible from the generator
    flipped = 0
    for b in range(64):
        candidates = {(t, left, f) for t in range(5) for left in range(5) for f in (False, True)
                      if torch.equal(crops[b], (images[b, t:t + 8, left:left + 8].flip(1) if f
                                                else images[b, t:t + 8, left:left + 8]))}
        assert candidates, f"image {b} is not a crop of its input"
        flipped += all(f for _, _, f in candidates)
    assert 10 < flipped < 54  # about half of them mirrored


def loop_reference(images: torch.Tensor, stats: StoreStats, config: AugmentConfig,
                   seed: int) -> torch.Tensor:
    """The training view written per image, from the same random draws."""
    generator = torch.Generator().manual_seed(seed)
    tops, lefts, flips = _random_boxes(images, config.crop_size, generator, config.flip)
    shift = lighting_shift(len(images), stats.pca_eigval, stats.pca_eigvec, config.lighting_std,
                           generator)
    c = config.crop_size
    out = []
    for b in range(len(images)):
        x = images[b].double()
        if config.normalization == "mean_image":
            x = x - stats.mean_image.double()  # §2: subtract the mean image, then cut the patch
        patch = x[tops[b]:tops[b] + c, lefts[b]:lefts[b] + c]
        if flips[b]:
            patch = patch.flip(1)
        patch = patch + shift[b].double()
        if config.normalization == "channel":
            patch = (patch - stats.channel_mean.double()) / stats.channel_std.double()
        out.append(patch.permute(2, 0, 1))
    return torch.stack(out)


@pytest.mark.parametrize("normalization", ["mean_image", "channel"])
@pytest.mark.parametrize("device", DEVICES)
def test_train_augment_equals_the_per_image_formula(normalization: str, device: str) -> None:
    size, crop = 24, 16
    stats = fake_stats(size)
    config = AugmentConfig(crop_size=crop, normalization=normalization)
    images = batch(32, size)
    augment = TrainAugment(stats, config)
    out = augment(images.to(device), torch.Generator(device).manual_seed(7))
    assert out.shape == (32, 3, crop, crop) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last) and out.device.type == device
    if device == "cpu":
        expected = loop_reference(images, stats, config, seed=7)
        torch.testing.assert_close(out.double(), expected, atol=1e-3, rtol=1e-5)


def test_channel_normalization_matches_torchvision_normalize() -> None:
    images = batch(4, 16)
    transform = EvalTransform(Normalization.from_stats("imagenet", None), crop_size=16)
    expected = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(
        images.permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(transform(images), expected, atol=1e-5, rtol=1e-5)


def test_pca_lighting_offsets_have_the_papers_distribution() -> None:
    stats = fake_stats(8)
    generator = torch.Generator().manual_seed(0)
    shifts = lighting_shift(200_000, stats.pca_eigval, stats.pca_eigvec, 0.1, generator).double()
    expected_std = 0.1 * stats.pca_eigval.double() / 255  # per principal component
    expected = stats.pca_eigvec.double() @ torch.diag(expected_std ** 2) @ stats.pca_eigvec.double().T
    torch.testing.assert_close(torch.cov(shifts.T), expected, atol=0.02, rtol=0.02)
    assert abs(float(expected_std[0]) - 5.546) < 0.01  # fb.resnet.torch: 0.1 * 55.46 levels
    images = torch.zeros(4, 3, 2, 2)
    lit = pca_lighting(images, stats.pca_eigval, stats.pca_eigvec, 0.1,
                       torch.Generator().manual_seed(1))
    assert torch.equal(lit[:, :, 0, 0], lit[:, :, 1, 1])  # one offset for every pixel
    assert not torch.equal(lit[0], lit[1])  # a fresh draw per image


def test_lighting_off_and_no_flip_is_a_plain_crop() -> None:
    stats = fake_stats(10)
    config = AugmentConfig(crop_size=10, flip=False, lighting_std=0.0)
    images = batch(2, 10)
    out = TrainAugment(stats, config)(images)
    torch.testing.assert_close(out, (images.float() - stats.mean_image).permute(0, 3, 1, 2))


@pytest.mark.parametrize("view", ["center", "ten_crop"])
def test_eval_transform_round_trips_through_preprocess(view: str) -> None:
    stats = fake_stats(20)
    images = batch(3, 20)
    for normalization in ("mean_image", "channel", "imagenet"):
        config = AugmentConfig(crop_size=12, normalization=normalization)
        direct = EvalTransform.from_stats(stats, config, view)
        preprocess = direct.preprocess(image_size=20)
        assert preprocess["image_size"] == 20 and preprocess["crop_size"] == 12
        rebuilt = EvalTransform.from_preprocess(preprocess, view)
        torch.testing.assert_close(direct(images), rebuilt(images))
    out = EvalTransform.from_stats(stats, AugmentConfig(crop_size=12), view)(images)
    assert out.shape == (3 * (10 if view == "ten_crop" else 1), 3, 12, 12)
    # mean image: each view is the same view of (image - mean image)
    centred = (images.float() - stats.mean_image)
    top = left = 4
    torch.testing.assert_close(out[0], centred[0, top:top + 12, left:left + 12].permute(2, 0, 1)
                               if view == "center" else centred[0, :12, :12].permute(2, 0, 1))
    assert EvalTransform.from_stats(stats, AugmentConfig(crop_size=12), view).preprocess()[
        "mean"].shape == (3, 20, 20)


def test_bf16_output_and_errors() -> None:
    stats = fake_stats(16)
    out = TrainAugment(stats, AugmentConfig(crop_size=8, dtype=torch.bfloat16))(batch(2, 16))
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(AlexNetError, match="mean image is 16x16"):
        TrainAugment(stats, AugmentConfig(crop_size=8))(batch(2, 20))
    with pytest.raises(AlexNetError, match="unknown normalization"):
        AugmentConfig(normalization="zca")
    with pytest.raises(AlexNetError, match="larger than the images"):
        TrainAugment(stats, AugmentConfig(crop_size=32))(batch(2, 16))


def test_out_buffer_is_written_and_checked() -> None:
    stats = fake_stats(16)
    augment = TrainAugment(stats, AugmentConfig(crop_size=8))
    out = torch.empty(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    images = batch(4, 16)
    result = augment(images, torch.Generator().manual_seed(0), out=out)
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(result, augment(images, torch.Generator().manual_seed(0)))
    with pytest.raises(AlexNetError, match="channels_last"):
        augment(images, out=torch.empty(4, 3, 8, 8))
    ten = EvalTransform.from_stats(stats, AugmentConfig(crop_size=8), "ten_crop")
    out10 = torch.empty(40, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert ten(images, out=out10).data_ptr() == out10.data_ptr()


@pytest.mark.parametrize("view", ["train", "center", "ten_crop"])
def test_index_into_a_whole_store_equals_the_gathered_batch(view: str) -> None:
    stats = fake_stats(16)
    store = batch(10, 16, seed=3)
    index = torch.tensor([7, 2, 2, 9])
    config = AugmentConfig(crop_size=12)
    if view == "train":
        transform = TrainAugment(stats, config)
        direct = transform(store[index], torch.Generator().manual_seed(4))
        indexed = transform(store, torch.Generator().manual_seed(4), index=index)
    else:
        transform = EvalTransform.from_stats(stats, config, view)
        direct, indexed = transform(store[index]), transform(store, index=index)
    assert torch.equal(direct, indexed)


def test_mean_image_preprocess_with_a_std_divides() -> None:
    stats = fake_stats(16)
    plain = EvalTransform.from_stats(stats, AugmentConfig(crop_size=8))
    preprocess = plain.preprocess()
    preprocess["std"] = torch.full((3,), 4.0)  # e.g. a trainer that scales its inputs
    images = batch(2, 16)
    torch.testing.assert_close(EvalTransform.from_preprocess(preprocess)(images),
                               plain(images) / 4.0)


# ------------------------------------------------------------- random-resized crops


def test_random_resized_boxes_follow_torchvision_ranges() -> None:
    size, scale = 64, 0.3
    boxes = random_resized_boxes(20_000, size, scale, torch.Generator().manual_seed(0))
    top, left, height, width = boxes.T
    assert boxes.dtype == torch.int64 and boxes.shape == (20_000, 4)
    assert int(top.min()) == 0 and int(left.min()) == 0  # every position can be drawn
    assert int((top + height).max()) == size and int((left + width).max()) == size
    assert bool(((top + height) <= size).all() and ((left + width) <= size).all())
    area = (height * width).double() / size ** 2
    ratio = width.double() / height.double()
    slack = 2.5 / size  # sides are rounded to whole pixels
    assert float(area.min()) > scale - 2 * slack and float(area.max()) <= 1
    assert 3 / 4 - slack < float(ratio.min()) < 0.8 and 1.25 < float(ratio.max()) < 4 / 3 + slack
    whole = (height == size) & (width == size)  # only the fallback (or a square draw) is whole
    assert 0 < float(whole.double().mean()) < 0.2
    again = random_resized_boxes(20_000, size, scale, torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)


@pytest.mark.parametrize("flipped", [False, True])
def test_resized_crops_equal_torchvision_resized_crop(flipped: bool) -> None:
    images = batch(3, 40).float()
    boxes = torch.tensor([[3, 5, 20, 31], [0, 0, 40, 40], [10, 2, 29, 17]])
    flips = torch.tensor([flipped, flipped, not flipped])
    views = resized_crops(images, resized_crop_grid(boxes, flips, 40, 24))
    assert views.shape == (3, 3, 24, 24)
    for i, (top, left, height, width) in enumerate(boxes.tolist()):
        expected = tvf.resized_crop(images[i].permute(2, 0, 1), top, left, height, width,
                                    [24, 24], antialias=False)
        expected = expected.flip(-1) if flips[i] else expected
        # equal away from the box's outer half-pixel, where torchvision clamps at the
        # crop's edge and the batched resample reads the neighbouring image pixels
        torch.testing.assert_close(views[i, :, 1:-1, 1:-1], expected[:, 1:-1, 1:-1],
                                   atol=1e-3, rtol=1e-5)
    whole = resized_crops(images[1:2], resized_crop_grid(boxes[1:2], flips[1:2], 40, 40))[0]
    source = images[1].permute(2, 0, 1)
    torch.testing.assert_close(whole, source.flip(-1) if flipped else source, atol=1e-3, rtol=0)


@pytest.mark.parametrize("normalization", ["mean_image", "channel"])
def test_scale_augmentation_is_the_normalised_image_resampled_plus_lighting(
        normalization: str) -> None:
    # scale 1: every box is the whole image (no other fits a square at aspect != 1), so at
    # crop == size each view is exactly (image - mean) / std, mirrored or not, plus one
    # lighting offset per image and channel
    stats = fake_stats(16)
    config = AugmentConfig(crop_size=16, normalization=normalization, resized_crop_scale=1.0)
    images = batch(64, 16, seed=5)
    out = TrainAugment(stats, config)(images, torch.Generator().manual_seed(2))
    assert out.shape == (64, 3, 16, 16) and out.is_contiguous(memory_format=torch.channels_last)
    if normalization == "mean_image":
        normalised = images.double() - stats.mean_image.double()
    else:
        normalised = (images.double() - stats.channel_mean.double()) / stats.channel_std.double()
    normalised = normalised.permute(0, 3, 1, 2)
    # the offsets the augmentation drew: replay its generator (boxes, flips, then lighting)
    replay = torch.Generator().manual_seed(2)
    random_resized_boxes(64, 16, 1.0, replay)
    torch.rand(64, generator=replay)
    shifts = lighting_shift(64, stats.pca_eigval, stats.pca_eigvec, 0.1, replay).double()
    std = 1.0 if normalization == "mean_image" else stats.channel_std.double()
    mirrored = 0
    for view, plain, shift in zip(out.double(), normalised, shifts / std, strict=True):
        difference = view - plain
        if float((difference - difference.mean((1, 2), keepdim=True)).abs().max()) > 1e-3:
            difference, mirrored = view - plain.flip(-1), mirrored + 1
        # the lighting: one offset per channel, (eigvec @ alpha * eigval) / std
        torch.testing.assert_close(difference, shift[:, None, None].expand_as(difference),
                                   atol=1e-3, rtol=0)
    assert 16 < mirrored < 48  # about half mirrored


def test_scale_augmentation_views_vary_in_scale_and_take_out_and_index() -> None:
    stats = fake_stats(32)
    config = AugmentConfig(crop_size=16, lighting_std=0.0, resized_crop_scale=0.1)
    augment = TrainAugment(stats, config)
    store = batch(10, 32, seed=1)
    index = torch.tensor([4, 4, 8, 0])
    direct = augment(store[index], torch.Generator().manual_seed(3))
    out = torch.empty(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    indexed = augment(store, torch.Generator().manual_seed(3), out=out, index=index)
    assert indexed.data_ptr() == out.data_ptr() and torch.equal(direct, indexed)
    assert not torch.equal(direct[0], direct[1])  # the same image, two different boxes
    with pytest.raises(AlexNetError, match="channels_last"):
        augment(store, out=torch.empty(4, 3, 16, 16), index=index)
    with pytest.raises(AlexNetError, match="resized_crop_scale must be in"):
        AugmentConfig(resized_crop_scale=1.5)
    with pytest.raises(AlexNetError, match="need square images"):
        augment(torch.zeros(2, 32, 40, 3, dtype=torch.uint8))
    bf16 = TrainAugment(stats, AugmentConfig(crop_size=16, resized_crop_scale=0.5,
                                             dtype=torch.bfloat16))
    result = bf16(store, out=out, index=index)  # written to out, then returned as asked
    assert result.dtype == torch.bfloat16 and result.is_contiguous(memory_format=torch.channels_last)
