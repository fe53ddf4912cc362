"""Mixture files at the edges of float64 and float32: each is refused with one line naming
the file and the problem, before anything is sampled."""

import json

import pytest
import torch

from diffusion.data import DataError, get_dataset

BAD_MIXTURES = {
    # name: (file text, words the message must contain)
    "overflowing_weights": (
        {"weights": [1e308, 1e308], "means": [[0, 0], [1, 1]], "stds": [1, 1]},
        "weights sum to more than 1.8e308",
    ),
    "long_integer_weight": (
        '{"weights": [1, ' + "9" * 5000 + '], "means": [[0, 0], [1, 1]], "stds": [1, 1]}',
        "weights holds a non-finite or huge value",
    ),
    "long_integer_mean": (
        '{"weights": [1, 1], "means": [[0, 0], [1, ' + "9" * 5000 + ']], "stds": [1, 1]}',
        "means holds a non-finite or huge value",
    ),
    "far_mean": (
        {"weights": [1, 1], "means": [[1e300, 0], [1, 1]], "stds": [1, 1]},
        "values too large: a mean has norm",
    ),
    "wide_std": (
        {"weights": [1, 1], "means": [[0, 0], [1, 1]], "stds": [1e300, 1]},
        "values too large: a component's spread",
    ),
    "wide_covariance": (
        {"weights": [1], "means": [[0, 0]], "covariances": [[[1e300, 0], [0, 1]]]},
        "values too large: a component's spread",
    ),
    "one_point": (
        {"weights": [1, 2], "means": [[3, 4], [3, 4]], "stds": [1e-200, 1e-200]},
        "every point is the same",
    ),
    "flat_coordinate": (
        {"weights": [1, 1], "means": [[0, 0], [1, 0]], "stds": [1e-200, 1e-200]},
        "coordinate 1 does not vary",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_MIXTURES))
def test_bad_mixture_is_one_line_naming_the_file(tmp_path, name):
    spec, words = BAD_MIXTURES[name]
    path = tmp_path / f"{name}.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    with pytest.raises(DataError) as info:
        get_dataset(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert f"{name}.json" in message
    assert words in message


def test_large_but_summable_weights_sample(tmp_path):
    path = tmp_path / "heavy.json"
    spec = {"weights": [1e307, 3e307], "means": [[0, 0], [10, 10]], "stds": [1, 1]}
    path.write_text(json.dumps(spec))
    x = get_dataset(str(path)).sample(4000, torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    assert 0.70 < float((x[:, 0] > 5).float().mean()) < 0.80  # weight 3/4 on the second


def test_integer_entries_read_as_numbers(tmp_path):
    path = tmp_path / "ints.json"
    path.write_text('{"weights": [1, 3], "means": [[0, 0], [2, 2]], "stds": [1, 2]}')
    mixture = get_dataset(str(path)).mixture
    assert torch.equal(mixture.weights, torch.tensor([0.25, 0.75], dtype=torch.float64))
