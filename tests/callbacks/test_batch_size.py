"""The Lightning callback's batch sizes: the same as Lightning's ``extract_batch_size`` on every
batch shape, read along a remembered path, walked again when the shape changes."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    TensorDataset,
)

from codecarbon_callbacks.batch_size import BatchSizer, FixedBatches, SampleCounter, find_path


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


# -- counting from the number of batches ----------------------------------------------------


DATA = TensorDataset(torch.zeros(70, 3), torch.zeros(70))


class Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.zeros(10, 2))


class Loader(DataLoader):
    pass


def _pairs(items):
    return (torch.stack([a for a, _ in items]), torch.stack([b for _, b in items]))


def _halves(indices):  # a batch sampler of uneven batches
    return iter([indices[:5], indices[5:7], indices[7:]])


@pytest.mark.parametrize(
    "loader",
    [
        DataLoader(DATA, batch_size=32),  # a short last batch of 6
        DataLoader(DATA, batch_size=32, shuffle=True),
        DataLoader(DATA, batch_size=32, drop_last=True),
        DataLoader(DATA, batch_size=7),
        DataLoader(DATA, batch_sampler=BatchSampler(RandomSampler(DATA), 16, False)),
    ],
    ids=["short last", "shuffled", "drop_last", "even", "explicit BatchSampler"],
)
def test_fixed_batching_counts_what_reading_every_batch_counts(loader):
    assert FixedBatches.of(loader) is not None
    fixed, read = SampleCounter(fallback=_lightning), SampleCounter(fallback=_lightning)
    fixed.use(loader)
    for epoch, limit in enumerate((None, 2, None)):  # a limit: an epoch cut after 2 batches
        fixed.epoch_began()
        read.epoch_began()
        for i, batch in enumerate(loader):
            if limit is not None and i == limit:
                break
            fixed.batch(batch)
            read.batch(batch)
            assert fixed.samples == read.samples, (epoch, i)
    assert fixed.fast and not read.fast
    sizes = [len(b[0]) for b in loader]
    assert fixed.samples == 2 * sum(sizes) + sum(sizes[:2])


@pytest.mark.parametrize(
    "loader",
    [
        DataLoader(DATA, batch_size=32, collate_fn=_pairs),  # any collate may change sizes
        DataLoader(DATA, batch_sampler=[[0, 1, 2], [3]]),  # a batch sampler of its own
        DataLoader(Stream(), batch_size=4),  # no length
        Loader(DATA, batch_size=32),  # a subclass may batch otherwise
        [DataLoader(DATA, batch_size=32)],  # several loaders
        None,
    ],
    ids=["collate", "batch sampler", "iterable", "subclass", "a list", "none"],
)
def test_batching_that_cannot_be_known_in_advance_is_read_per_batch(loader):
    assert FixedBatches.of(loader) is None


class Shrinking(torch.utils.data.Dataset):
    """A dataset whose length the test changes (between epochs, or during one)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return torch.zeros(3), torch.zeros(1)


def _count_epochs(loader: Any, change: Any, epochs: int = 3) -> tuple[list[int], list[int]]:
    """Per-epoch samples counted from the batch count and by reading every batch;
    ``change(epoch, None)`` changes the data before each epoch, ``change(epoch, i)`` after
    batch ``i`` was drawn and before it is counted."""
    fixed, read = SampleCounter(fallback=_lightning), SampleCounter(fallback=_lightning)
    fixed.use(loader)
    per_epoch: tuple[list[int], list[int]] = ([], [])
    for epoch in range(epochs):
        change(epoch, None)  # between epochs (a curriculum, a batch size schedule)
        before = (fixed.samples or 0, read.samples or 0)
        fixed.epoch_began()
        read.epoch_began()
        for i, batch in enumerate(loader):
            change(epoch, i)  # after the batch was drawn, before it is counted
            fixed.batch(batch)
            read.batch(batch)
        per_epoch[0].append(fixed.samples - before[0])
        per_epoch[1].append(read.samples - before[1])
    return per_epoch


def test_a_sampler_changed_between_epochs_is_read_again():
    data = TensorDataset(torch.zeros(50, 3), torch.zeros(50))
    sampler = torch.utils.data.SubsetRandomSampler(list(range(50)))
    loader = DataLoader(data, batch_size=16, sampler=sampler)

    def curriculum(epoch: int, i: int | None) -> None:
        if i is None:
            sampler.indices = list(range([50, 30, 20][epoch]))

    assert _count_epochs(loader, curriculum) == ([50, 30, 20], [50, 30, 20])


def test_a_batch_size_changed_between_epochs_is_read_again():
    loader = DataLoader(TensorDataset(torch.zeros(50, 3)), batch_size=32)

    def schedule(epoch: int, i: int | None) -> None:
        if i is None:
            loader.batch_sampler.batch_size = [32, 16, 7][epoch]

    assert _count_epochs(loader, schedule) == ([50, 50, 50], [50, 50, 50])


def test_a_dataset_shrinking_between_or_during_epochs_is_counted_as_it_is():
    data = Shrinking(50)
    loader = DataLoader(data, batch_size=16)

    def between(epoch: int, i: int | None) -> None:
        if i is None:
            data.n = [50, 35, 20][epoch]

    assert _count_epochs(loader, between) == ([50, 35, 20], [50, 35, 20])


class Fewer(torch.utils.data.Sampler):
    """A sampler that yields fewer indices than its length says."""

    def __init__(self, declared: int, yielded: int) -> None:
        self.declared, self.yielded = declared, yielded

    def __len__(self) -> int:
        return self.declared

    def __iter__(self):
        return iter(range(self.yielded))


def test_a_sampler_of_its_own_is_read_per_batch():
    sampler = Fewer(declared=40, yielded=30)  # 8, 8, 8, 6 where 8 x 5 was said
    loader = DataLoader(TensorDataset(torch.zeros(40, 3)), batch_size=8, sampler=sampler)
    assert FixedBatches.of(loader) is None
    assert _count_epochs(loader, lambda epoch, i: None, epochs=2) == ([30, 30], [30, 30])


def test_a_last_batch_of_another_size_corrects_the_epoch_and_reads_every_batch_after():
    # the sampler drew 40 indices; the dataset then says 38: the batching read at the first
    # batch expects a last batch of 6, the loader gives 8
    data = Shrinking(40)
    loader = DataLoader(data, batch_size=16)

    def shrink(epoch: int, i: int | None) -> None:
        if epoch == 1 and i == 0:
            data.n = 38

    assert _count_epochs(loader, shrink) == ([40, 40, 38], [40, 40, 38])


def test_a_batch_size_changed_during_an_epoch_is_followed():
    loader = DataLoader(TensorDataset(torch.zeros(50, 3)), batch_size=16)

    def halve(epoch: int, i: int | None) -> None:
        if epoch == 1 and i == 1:  # batch 1 was drawn with 16; the next ones with 8
            loader.batch_sampler.batch_size = 8
        if i is None and epoch == 2:
            loader.batch_sampler.batch_size = 16

    assert _count_epochs(loader, halve) == ([50, 50, 50], [50, 50, 50])


def test_a_first_batch_of_another_size_goes_back_to_reading_every_batch(monkeypatch):
    loader = DataLoader(TensorDataset(torch.zeros(20, 2)), batch_size=5)
    counter = SampleCounter(fallback=_lightning)
    counter.use(loader)
    wrong = FixedBatches(batch_size=8, samples=20, drop_last=False)  # says batches of 8
    monkeypatch.setattr(FixedBatches, "of", classmethod(lambda cls, loader: wrong))
    counter.epoch_began()
    for batch in loader:
        counter.batch(batch)
    assert not counter.fast and counter.loader is None and counter.samples == 20
    counter.epoch_began()
    counter.batch(next(iter(loader)))
    assert counter.samples == 25


def test_no_batch_with_a_size_means_unknown_samples():
    counter = SampleCounter(fallback=_lightning)
    assert counter.samples is None
    counter.batch(["text"])
    assert counter.samples is None
    counter.use(DataLoader(TensorDataset(torch.zeros(10, 1)), batch_size=4))
    counter.batch((torch.zeros(4, 1),))
    counter.epoch_began()
    assert counter.samples == 4
