"""Image data: the digits, generated shapes, a user's image arrays and folders, and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.data import (
    DataError,
    available_datasets,
    get_dataset,
    held_out_split,
    is_image_dataset,
)
from diffusion.data.images import MAX_CHANNELS, images_from_array, load_digits
from diffusion.data.shapes import SHAPES, draw_shapes


def test_digits_are_sklearns_1797_images_with_their_labels():
    images = load_digits()
    assert images.pixels.shape == (1797, 1, 8, 8) and images.value_range == (0.0, 16.0)
    assert sorted(images.pixels.unique().tolist()) == list(range(17))  # 17 grey levels
    assert set(images.labels.tolist()) == set(range(10))
    # The first digit of the set is a 0: its centre is dark, its sides are bright.
    zero = images.pixels[0, 0]
    assert int(images.labels[0]) == 0 and zero[3:5, 3:5].mean() < zero[3:5, 1:3].mean()


def test_the_digits_set_keeps_a_fixed_held_out_split():
    digits = get_dataset("digits")
    assert digits.shape == (1, 8, 8) and digits.dim == 64 and digits.is_image
    assert digits.points.shape == (1527, 64) and digits.held_out.shape == (270, 64)
    assert digits.labels.shape == (1527,)
    train, held = held_out_split(1797)
    assert torch.equal(torch.cat([train, held]).sort().values, torch.arange(1797))
    assert torch.equal(held_out_split(1797)[1], held)  # the same split every time
    every = load_digits().pixels.reshape(1797, 64)
    assert torch.equal(digits.points, every[train]) and torch.equal(digits.held_out, every[held])
    assert held_out_split(19)[1].numel() == 0  # a small set keeps every image


def test_image_names_are_listed_and_recognised_without_loading():
    assert {"digits", "shapes", "shapes32"} <= set(available_datasets())
    assert is_image_dataset("digits") and is_image_dataset("shapes32")
    assert not is_image_dataset("swissroll") and not is_image_dataset("no/such.npy")


def test_shapes_are_reproducible_in_range_and_of_every_kind():
    a, labels = draw_shapes(400, torch.Generator().manual_seed(3))
    b, _ = draw_shapes(400, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (400, 1, 16, 16)
    assert a.min() == 0 and a.max() <= 1 and set(labels.tolist()) == set(range(len(SHAPES)))
    big, _ = draw_shapes(3, torch.Generator().manual_seed(0), size=32)
    assert big.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="sizes 16, 32"):
        draw_shapes(2, size=12)


def test_shapes_are_anti_aliased_and_the_disc_has_its_area():
    images, labels = draw_shapes(2000, torch.Generator().manual_seed(1))
    # Anti-aliasing: edge pixels take values strictly between the background and the shape.
    lit = images[images > 0]
    peak = images.flatten(1).amax(1)
    assert ((images > 0) & (images < 0.99 * peak[:, None, None, None])).sum() > 0.1 * lit.numel()
    # A disc of radius r covers about pi r^2 pixels of its intensity: total ink / intensity
    # lies within the radius range drawn (0.18 to 0.4 of 16 pixels).
    discs = images[labels == 0]
    area = discs.flatten(1).sum(1) / discs.flatten(1).amax(1)
    assert area.min() > math.pi * (0.18 * 16) ** 2 * 0.9
    assert area.max() < math.pi * (0.4 * 16) ** 2 * 1.05


def test_the_shapes_set_draws_fresh_images():
    shapes = get_dataset("shapes")
    g = torch.Generator().manual_seed(0)
    first, second = shapes.sample(50, g), shapes.sample(50, g)
    assert first.shape == (50, 256) and shapes.points is None and not torch.equal(first, second)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((5, 6, 7), (1, 6, 7)), ((5, 6, 7, 3), (3, 6, 7)), ((5, 3, 6, 7), (3, 6, 7)),
     ((5, 4, 4, 3), (3, 4, 4))],
)  # fmt: skip
def test_arrays_of_each_layout_become_channels_first(shape, expected):
    array = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    images = images_from_array(array, "a")
    assert tuple(images.pixels.shape[1:]) == expected
    if len(shape) == 4 and shape[3] <= MAX_CHANNELS:  # channels-last: moved, not reshaped
        assert images.pixels[1, 2, 3, 1] == array[1, 3, 1, 2]


def test_uint8_arrays_span_0_255_and_floats_their_own_range(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "faces.npy"
    np.save(path, rng.integers(0, 200, size=(10, 8, 8, 3), dtype=np.uint8))
    data = get_dataset(str(path))
    assert data.shape == (3, 8, 8) and data.value_range == (0.0, 255.0) and data.dim == 192
    np.save(path, rng.uniform(-3, 5, size=(10, 8, 8)).astype(np.float32))
    low, high = get_dataset(str(path)).value_range
    assert -3 <= low < -2.5 and 4.5 < high <= 5


def _png(path, size=(8, 8), mode="L", value=128):
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)


def test_a_folder_of_class_subfolders_gives_labels_in_name_order(tmp_path):
    for name, count in (("cat", 2), ("ant", 3)):
        (tmp_path / name).mkdir()
        for i in range(count):
            _png(tmp_path / name / f"{i}.png", value=40 * i)
    data = get_dataset(str(tmp_path))
    assert data.shape == (1, 8, 8) and data.points.shape == (5, 64)
    assert data.labels.tolist() == [0, 0, 0, 1, 1]  # ant (3 images) before cat (2)
    assert data.value_range == (0.0, 255.0)


def test_a_mix_of_grey_and_colour_images_is_read_as_colour(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", mode="RGB")
    data = get_dataset(str(tmp_path))
    assert data.shape == (3, 8, 8)


def _bad_folder(tmp_path, kind):
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "mixed-sizes":
        _png(folder / "a.png")
        _png(folder / "b.png", size=(9, 8))
    elif kind == "not-an-image":
        _png(folder / "a.png")
        (folder / "notes.txt").write_text("hello")
    elif kind == "truncated":
        _png(folder / "a.png")
        data = (folder / "a.png").read_bytes()
        (folder / "b.png").write_bytes(data[: len(data) // 2])
    elif kind == "fake-png":
        _png(folder / "a.png")
        (folder / "b.png").write_bytes(b"not a png at all")
    elif kind == "bomb":
        _png(folder / "a.png", size=(300, 300))
    elif kind == "empty":
        pass
    elif kind == "one-image":
        _png(folder / "a.png")
    elif kind == "files-and-folders":
        _png(folder / "a.png")
        (folder / "sub").mkdir()
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [("mixed-sizes", "same size"), ("not-an-image", "is not a .png"),
     ("truncated", "cannot read as an image"), ("fake-png", "cannot read as an image"),
     ("bomb", "at most 4_096 pixels"), ("empty", "holds no images"),
     ("one-image", "need at least 2"), ("files-and-folders", "both files")],
)  # fmt: skip
def test_bad_image_folders_get_one_line_errors(tmp_path, kind, message):
    folder = _bad_folder(tmp_path, kind)
    with pytest.raises(DataError, match=message) as error:
        get_dataset(str(folder))
    assert "\n" not in str(error.value) and str(folder) in str(error.value)


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.full((4, 8, 8), np.nan, np.float32), "NaN"),
     (np.zeros((4, 8, 8, 7, 9), np.float32), "shape"),
     (np.zeros((4, 6, 8, 9), np.float32), "more than 4 channels"),
     (np.ones((4, 8, 8), np.float32), "nothing to learn"),
     (np.zeros((1, 8, 8), np.uint8), "need at least 2"),
     (np.zeros((3, 80, 80), np.uint8), "at most 4_096"),
     (np.zeros((0, 8, 8), np.uint8), "empty")],
)  # fmt: skip
def test_bad_image_arrays_get_one_line_errors(tmp_path, array, message):
    path = tmp_path / "images.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=message):
        get_dataset(str(path)) if array.ndim in (3, 4) else images_from_array(array, "x")
