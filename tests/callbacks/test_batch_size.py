"""The Lightning callback's batch sizes: the same as Lightning's ``extract_batch_size`` on every
batch shape, read along a remembered path, walked again when the shape changes."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import pytest
import torch

from codecarbon_callbacks.batch_size import BatchSizer, find_path


def _lightning(batch: Any) -> int:
    from lightning.pytorch.utilities.data import extract_batch_size

    return int(extract_batch_size(batch))


@dataclasses.dataclass
class Example:
    label: str
    features: torch.Tensor
    target: torch.Tensor


Pair = namedtuple("Pair", ["x", "y"])

BATCHES = {
    "tensor": lambda n: torch.zeros(n, 3),
    "0-d tensor": lambda n: torch.tensor(float(n)),
    "tuple": lambda n: (torch.zeros(n, 3), torch.zeros(n)),
    "list, a number first": lambda n: [7, None, torch.zeros(n, 2)],
    "dict": lambda n: {"input_ids": torch.zeros(n, 5), "labels": torch.zeros(n)},
    "ordered dict, a string first": lambda n: OrderedDict(
        [("name", "batch"), ("x", torch.zeros(n, 4))]
    ),
    "nested": lambda n: {"meta": {"ids": [1, 2]}, "inputs": ({"x": torch.zeros(n, 1)}, None)},
    "dataclass": lambda n: Example("a", torch.zeros(n, 2), torch.zeros(n)),
    "namedtuple": lambda n: Pair(torch.zeros(n, 2), torch.zeros(n)),
    "a set first": lambda n: ({1, 2}, torch.zeros(n, 2)),
    "numpy first": lambda n: (np.zeros((n + 1, 2)), torch.zeros(n, 2)),
}


@pytest.mark.parametrize("kind", list(BATCHES))
def test_each_batch_shape_sizes_as_lightning_does(kind):
    sizer = BatchSizer(fallback=_lightning)
    # the first batch walks; the next ones follow the path; the last batch of an epoch is short
    for n in (16, 16, 16, 5):
        batch = BATCHES[kind](n)
        assert sizer(batch) == _lightning(batch), (kind, n)


def test_a_batch_of_another_shape_is_walked_again():
    sizer = BatchSizer(fallback=_lightning)
    assert sizer((torch.zeros(8, 2), torch.zeros(8))) == 8
    assert sizer({"x": torch.zeros(3, 2)}) == 3  # a dict after tuples: the path fails, walk again
    assert sizer({"y": [torch.zeros(4)]}) == 4  # same type, another key
    assert sizer(torch.zeros(6, 1)) == 6
    # a tensor after tuples: indexing it along the tuple's path would give a row (size 1)
    assert sizer((torch.zeros(8, 2), torch.zeros(8))) == 8
    assert sizer(torch.zeros(6, 1)) == 6
    assert sizer([torch.zeros(5, 1)]) == 5  # a list after tuples: the same indices, its own walk


def test_a_batch_without_a_tensor_has_no_size():
    sizer = BatchSizer(fallback=_lightning)
    assert sizer([1, "a", None]) is None
    assert sizer({"a": {"b": 3}}) is None
    assert sizer({1, 2, 3}) is None  # Lightning's walk finds no tensor: its error is caught
    assert sizer((torch.zeros(2, 2),)) == 2  # and a later batch with one is sized


def test_paths_go_through_indices_keys_and_fields_only():
    assert find_path(torch.zeros(1)) == []
    assert len(find_path(({"x": torch.zeros(1)},))) == 2
    assert find_path(({1}, torch.zeros(1))) == "unstable"  # a set: no positions to remember
    assert find_path([1, "two", None]) == "nothing"
    deep: Any = torch.zeros(2)
    for _ in range(40):
        deep = [deep]
    assert find_path(deep) == "unstable"
    assert BatchSizer(fallback=_lightning)(deep) == 2  # Lightning's own walk decides
