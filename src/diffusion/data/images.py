"""Image data: scikit-learn's 8x8 digits, a user's image array (.npy) or folder of PNG/JPEG files.

Every image set is held as a finite array of N images of one shape (C, H, W), flattened to
(N, C*H*W) rows like a point cloud (so every process, sampler and metric applies), with the
range its pixels take (`value_range`): training maps that range to [-1, 1] and samples are
mapped back and clipped to it. Fresh draws of a finite set are bootstrap resamples, as for a
point-cloud file (`files.resample`).

Folders follow the usual image-folder convention: the images directly in the folder, or in
one subfolder per class, whose names (sorted) give the labels 0, 1, ...
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffusion.data.errors import DataError
from diffusion.data.files import MAX_DIM, _npy_header, _one_line, _read_npy

#: image files a folder may hold (lower-case suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: most channels an image may have (grey, grey + alpha, RGB, RGBA).
MAX_CHANNELS = 4
#: most images read from one folder.
MAX_IMAGES = 200_000
#: digits: the pixel values of scikit-learn's digits run over 0..16 (17 grey levels).
DIGITS_RANGE = (0.0, 16.0)


@dataclass(frozen=True, eq=False)
class Images:
    """A finite set of images: pixels (N, C, H, W) float32, their range, labels if any."""

    pixels: torch.Tensor
    value_range: tuple[float, float]
    labels: torch.Tensor | None = None
    classes: tuple[str, ...] = ()
    quantised: bool = False  # pixels on integer levels (uint8, the digits' 0..16)


def load_digits() -> Images:
    """scikit-learn's 1,797 handwritten digits (8x8, grey levels 0..16), labels 0..9.

    The data ship inside scikit-learn (a copy of the UCI optical digits test set), so nothing
    is downloaded.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("the digits set needs scikit-learn: pip install scikit-learn") from None
    bunch = sklearn_digits()
    pixels = torch.from_numpy(bunch.images.astype(np.float32))[:, None]  # (1797, 1, 8, 8)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return Images(pixels, DIGITS_RANGE, labels, tuple(str(d) for d in range(10)), quantised=True)


def _channels_first(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) -> (N, C, H, W).

    A 4-D array is channels-first when its second axis has at most MAX_CHANNELS entries and its
    last more, channels-last in the opposite case; when both are small (a 4 x 4 image with 3
    channels?) the last axis is taken as the channels, as image libraries store them.
    """
    if array.ndim == 3:
        return array[:, None]
    first, last = array.shape[1], array.shape[3]
    if last <= MAX_CHANNELS:
        return np.moveaxis(array, 3, 1)
    if first <= MAX_CHANNELS:
        return array
    raise DataError(
        f"{where}: images of shape {array.shape[1:]} have more than {MAX_CHANNELS} channels "
        f"either way round; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C <= "
        f"{MAX_CHANNELS}"
    )


def images_from_array(array: np.ndarray, where: str) -> Images:
    """Images from a numeric array of shape (N, H, W), (N, H, W, C) or (N, C, H, W).

    uint8 pixels have the range [0, 255]; other numbers the range from their smallest to their
    largest value. DataError (one line, naming `where`) for anything that is not such an array.
    """
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where}: has non-numeric dtype {array.dtype}; expected pixel values")
    if array.ndim not in (3, 4):
        raise DataError(f"{where}: has shape {array.shape}; images are (N, H, W), (N, H, W, C) "
                        "or (N, C, H, W)")  # fmt: skip
    if 0 in array.shape:
        raise DataError(f"{where}: is empty (shape {array.shape})")
    array = _channels_first(array, where)
    n, c, h, w = array.shape
    if c * h * w > MAX_DIM:
        raise DataError(f"{where}: images of {c} x {h} x {w} = {c * h * w:_} values; at most "
                        f"{MAX_DIM:_} are supported (e.g. 64 x 64 grey, 3 x 32 x 32 colour)")  # fmt: skip
    if n < 2:
        raise DataError(f"{where}: has only {n} image; need at least 2")
    finite = np.isfinite(array.reshape(n, -1)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(f"{where}: has NaN or infinite pixels in {bad.size} of {n} images "
                        f"(first: image {bad[0]}, counting from 0)")  # fmt: skip
    if array.dtype == np.uint8:
        value_range = (0.0, 255.0)
    else:
        value_range = (float(array.min()), float(array.max()))
        if not value_range[0] < value_range[1]:
            raise DataError(f"{where}: every pixel has the value {value_range[0]:g}: nothing "
                            "to learn")  # fmt: skip
        if max(abs(v) for v in value_range) > 1e18:
            raise DataError(f"{where}: pixel values up to {max(map(abs, value_range)):.3g}; "
                            "rescale the images")  # fmt: skip
    pixels = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return Images(pixels, value_range, quantised=array.dtype == np.uint8)


def is_image_array(path: Path) -> bool:
    """Whether a .npy file holds images (3 or 4 dimensions), read from its header alone."""
    header = _npy_header(path) if path.suffix.lower() == ".npy" and path.is_file() else None
    return header is not None and len(header[0]) in (3, 4)


def load_image_array(path: Path) -> Images:
    """Images from a .npy array (never unpickled); see `images_from_array`."""
    header = _npy_header(path)
    if header is not None and len(header[0]) in (3, 4) and math.prod(header[0][1:]) > 16 * MAX_DIM:
        raise DataError(f"{path}: images of shape {header[0][1:]} are too large; at most "
                        f"{MAX_DIM:_} values per image are supported")  # fmt: skip
    return images_from_array(_read_npy(path), str(path))


def _image_files(folder: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """The image files of a folder and their labels: its own images (no labels), or one
    subfolder per class. Files that are not images are an error, not skipped silently."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    subfolders = [p for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file()]
    if subfolders and files:
        raise DataError(f"{folder}: holds both files ({files[0].name}) and subfolders "
                        f"({subfolders[0].name}); put images either directly in it or in one "
                        "subfolder per class")  # fmt: skip
    if subfolders:
        paths, labels = [], []
        for label, sub in enumerate(subfolders):
            inside = sorted(p for p in sub.iterdir() if not p.name.startswith("."))
            if any(p.is_dir() for p in inside):
                raise DataError(f"{sub}: class folders cannot hold folders")
            if not inside:
                raise DataError(f"{sub}: the class folder is empty")
            paths += inside
            labels += [label] * len(inside)
        classes = tuple(p.name for p in subfolders)
    else:
        paths, labels, classes = files, [], ()
    if not paths:
        raise DataError(f"{folder}: the folder holds no images (.png, .jpg, .jpeg)")
    if len(paths) > MAX_IMAGES:
        raise DataError(f"{folder}: holds {len(paths):_} files; at most {MAX_IMAGES:_} images "
                        "are read")  # fmt: skip
    for path in paths:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{path}: is not a .png, .jpg or .jpeg image")
    return paths, labels, classes


def _read_image(path: Path, mode: str | None):
    """One image file as a (H, W, C) uint8 array and its Pillow mode; DataError if bad."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_DIM:  # refused before decoding (decompression bombs)
                    raise DataError(f"{path}: is {width} x {height} pixels; at most {MAX_DIM:_} "
                                    "pixels per image are supported")  # fmt: skip
                if image.mode not in ("L", "LA", "RGB", "RGBA"):
                    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                if mode is not None and image.mode != mode:
                    image = image.convert(mode)
                array = np.asarray(image)
                return (array[..., None] if array.ndim == 2 else array), image.mode
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:  # fmt: skip
        raise DataError(f"{path}: cannot read as an image ({_one_line(error)})") from None


def load_image_folder(folder: Path) -> Images:
    """The PNG/JPEG images of a folder (see the module docstring), all of one size, as uint8
    pixels of range [0, 255]. Grey images stay one channel; a mix of modes is converted to the
    widest (RGBA if any has alpha and colour)."""
    paths, labels, classes = _image_files(folder)
    # The modes first (cheap: headers only), so every image is converted once.
    modes = {_peek_mode(path) for path in paths}
    mode = modes.pop() if len(modes) == 1 else _widest(modes)
    arrays, size = [], None
    for path in paths:
        array, _ = _read_image(path, mode)
        if size is None:
            size = array.shape
        elif array.shape != size:
            raise DataError(f"{path}: is {array.shape[1]} x {array.shape[0]} pixels, "
                            f"{paths[0].name} is {size[1]} x {size[0]}; every image must have "
                            "the same size")  # fmt: skip
        arrays.append(array)
    where = str(folder)
    if len(arrays) < 2:
        raise DataError(f"{where}: holds only {len(arrays)} image; need at least 2")
    pixels = np.stack(arrays)  # (N, H, W, C) uint8
    images = images_from_array(np.moveaxis(pixels, 3, 1), where)
    label_tensor = torch.tensor(labels, dtype=torch.int64) if labels else None
    return Images(images.pixels, (0.0, 255.0), label_tensor, classes, quantised=True)


def _peek_mode(path: Path) -> str:
    """The Pillow mode an image will be read in, from its header."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            bands = image.getbands()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot read as an image ({_one_line(error)})") from None
    if mode in ("L", "LA", "RGB", "RGBA"):
        return mode
    return "RGBA" if "A" in bands else "RGB"


def _widest(modes: set[str]) -> str:
    """The mode that holds every one of `modes` without loss."""
    if modes <= {"L", "LA"}:
        return "LA"
    if "RGBA" in modes or "LA" in modes:
        return "RGBA"
    return "RGB"
