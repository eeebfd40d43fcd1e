"""Batched views against torchvision and against a loop over images written out by hand."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms

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
