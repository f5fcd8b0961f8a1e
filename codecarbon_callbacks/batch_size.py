"""The training samples of a fit, counted at every batch for next to nothing.

Lightning's ``extract_batch_size`` walks the whole batch (a generator per level, every leaf) and
takes the first dimension of the first tensor it meets: for ``(x, y)`` that is ``x``'s, for a dict
the first value's; some 10-20 microseconds a batch. :class:`BatchSizer` walks one batch the same
way, remembers the path to that tensor (indices, keys, dataclass fields, each with its
container's type) and reads the next batches along it; a batch of another shape is walked again.

With a loader of fixed batching (:class:`FixedBatches`: torch's ``DataLoader``, ``BatchSampler``
and default collate), :class:`SampleCounter` does not look at batches at all: a batch adds one to
the epoch's batch count and the samples follow from it.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

#: a path step: a callable taking a container and returning one of its items
_Step = Callable[[Any], Any]


def _is_tensor(value: Any) -> bool:
    # torch's Tensor without importing torch here: the callbacks run where torch is loaded
    return (
        hasattr(value, "ndim")
        and hasattr(value, "shape")
        and callable(getattr(value, "size", None))
    )


def _leaf_size(value: Any) -> int:
    """A tensor's number of samples: its first dimension, 1 for a 0-d tensor (as Lightning)."""
    return int(value.shape[0]) if value.ndim else 1


#: find_path's answers when no path is found: nothing here (walk on), or no stable path at all
_NOTHING = "nothing"
_UNSTABLE = "unstable"


def find_path(batch: Any, _depth: int = 0) -> list[_Step] | str:
    """The steps from ``batch`` to the first tensor in Lightning's walk order; ``"nothing"``
    when it holds no tensor, ``"unstable"`` when the walk passes through a container without
    stable positions (a set, a generator, an array) or nests too deep."""
    if _is_tensor(batch):
        return []
    if isinstance(batch, (str, bytes)):
        return _NOTHING  # Lightning's walk skips strings
    children: Iterable[tuple[_Step, Any]]
    if isinstance(batch, Mapping):
        children = ((operator.itemgetter(k), v) for k, v in batch.items())
    elif isinstance(batch, Sequence):
        children = ((operator.itemgetter(i), v) for i, v in enumerate(batch))
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        children = (
            (operator.attrgetter(f.name), getattr(batch, f.name)) for f in dataclasses.fields(batch)
        )
    elif isinstance(batch, Iterable):
        return _UNSTABLE
    else:
        return _NOTHING  # a number, None...: no size here
    if _depth >= 32:
        return _UNSTABLE
    for step, child in children:
        rest = find_path(child, _depth + 1)
        if isinstance(rest, list):
            return [step, *rest]
        if rest == _UNSTABLE:
            return _UNSTABLE
    return _NOTHING


class BatchSizer:
    """``sizer(batch)``: the batch's number of samples, or None when it holds no tensor.

    Args:
        fallback: called with a batch whose walk has no stable path (Lightning's own
            ``extract_batch_size``); it may raise when the batch has no tensor (None then).
    """

    def __init__(self, fallback: Callable[[Any], int] | None = None) -> None:
        #: (the container's type, the step into it) from the batch to its first tensor
        self._path: list[tuple[type, _Step]] | None = None
        self._leaf_type: Any = None  # the type of the tensor at the end of the path
        self._fallback = fallback

    def __call__(self, batch: Any) -> int | None:
        path = self._path
        if path is not None:
            try:
                node: Any = batch
                for container_type, step in path:
                    if type(node) is not container_type:
                        break  # another shape of batch: walk it
                    node = step(node)
                else:
                    if type(node) is self._leaf_type:
                        return _leaf_size(node)
            except Exception:
                pass
        return self._walk(batch)

    def _walk(self, batch: Any) -> int | None:
        path = find_path(batch)
        if not isinstance(path, list):
            self._path = self._leaf_type = None
            if path == _UNSTABLE and self._fallback is not None:
                try:
                    return int(self._fallback(batch))
                except Exception:
                    return None
            return None
        node, typed = batch, []
        for step in path:
            typed.append((type(node), step))
            node = step(node)
        self._path, self._leaf_type = typed, type(node)
        return _leaf_size(node)


def _known_samplers(data: Any) -> tuple[type, ...]:
    """torch's own samplers, which yield as many indices as their length says."""
    names = ("SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler")
    known = [getattr(data, name) for name in names if hasattr(data, name)]
    distributed = getattr(getattr(data, "distributed", None), "DistributedSampler", None)
    if distributed is not None:
        known.append(distributed)
    return tuple(known)


class FixedBatches:
    """A loader whose epoch is ``batch_size``-sample batches with a shorter last one (none if
    ``drop_last``), out of ``samples`` samples: the samples of its first ``k`` batches follow
    from ``k`` alone, with no look at any batch.

    Attributes:
        batch_size: samples per batch.
        samples: samples per epoch the sampler yields (this rank's, under a distributed sampler).
        drop_last: whether the last, incomplete batch is dropped.
    """

    def __init__(self, batch_size: int, samples: int, drop_last: bool) -> None:
        self.batch_size, self.samples, self.drop_last = batch_size, samples, drop_last
        #: batches in an epoch
        self.batches = samples // batch_size if drop_last else -(-samples // batch_size)

    def first_batches(self, k: int) -> int:
        """Samples in an epoch's first ``k`` batches."""
        done = k * self.batch_size
        return done if self.drop_last else min(done, self.samples)

    @classmethod
    def of(cls, loader: Any) -> FixedBatches | None:
        """The loader's fixed batching, or None when its batches' sizes cannot be known in
        advance: anything but a plain ``torch.utils.data.DataLoader`` with torch's own
        ``BatchSampler`` over one of torch's samplers and the default collate function (a
        custom batch sampler or collate function may make batches of any size, a custom
        sampler yield another number of indices than its length; an iterable dataset has no
        length)."""
        from codecarbon_callbacks_core._shared import imported_torch

        data = getattr(getattr(imported_torch(), "utils", None), "data", None)
        if data is None or type(loader) is not data.DataLoader:
            return None
        batch_sampler = loader.batch_sampler
        if type(batch_sampler) is not data.BatchSampler:
            return None
        if loader.collate_fn is not data.default_collate:
            return None
        if type(batch_sampler.sampler) not in _known_samplers(data):
            return None  # a sampler of its own may yield more or fewer indices than it says
        try:
            samples = len(batch_sampler.sampler)
            batch_size = int(batch_sampler.batch_size)
        except (TypeError, ValueError):
            return None
        if batch_size <= 0:
            return None
        return cls(batch_size, samples, bool(batch_sampler.drop_last))


class SampleCounter:
    """A fit's training samples on this rank, counted at each batch.

    By default each batch's size is read (:class:`BatchSizer`). With a loader of fixed batching
    (given by :meth:`use`), each batch only adds one to the epoch's batch count and the samples
    follow from it. The loader's batching is read again at each epoch's first batch (a sampler,
    a dataset or a batch size changed between epochs), and that batch's size and the epoch's
    last batch's are read and checked: where one is not the size expected, the epoch's count is
    corrected and every batch is read from then on.

    Args:
        fallback: see :class:`BatchSizer`.
    """

    def __init__(self, fallback: Callable[[Any], int] | None = None) -> None:
        self._sizer = BatchSizer(fallback)
        self.reset()

    def reset(self) -> None:
        """A new fit: nothing counted, every batch's size read."""
        #: samples counted before the current epoch's fixed batching (or in all, without one)
        self.counted = 0
        self.sized = False
        #: the loader whose batching is fixed (read at each epoch's first batch), or None
        self.loader: Any = None
        #: the current epoch's fixed batching, or None
        self.fixed: FixedBatches | None = None
        #: batches of the current epoch counted from ``fixed``
        self.epoch_batches = 0
        #: the number of the epoch's last batch, whose size is checked
        self.last_batch = 0
        #: True while each batch only adds one to ``epoch_batches``
        self.fast = False
        #: the loader's batch sampler while ``fast``, and its batch size then (watched)
        self.batch_sampler: Any = None
        self.batch_size = 0

    def use(self, loader: Any) -> None:
        """Count from the number of batches when ``loader`` has fixed batching
        (:meth:`FixedBatches.of`); None: read every batch's size."""
        self._fold()
        self.loader = loader if FixedBatches.of(loader) is not None else None

    def batch(self, batch: Any) -> None:
        """One training batch (while ``fast``, the callback's hook adds to ``epoch_batches``
        itself and calls :meth:`check` where :meth:`must_check`)."""
        if self.fast:
            self.epoch_batches += 1
            if self.must_check():
                self.check(batch)
            return
        size = self._sizer(batch)
        if self.loader is not None and self.fixed is None:  # an epoch's first batch
            fixed = FixedBatches.of(self.loader)
            if fixed is not None and size == fixed.first_batches(1):
                self.fixed, self.epoch_batches, self.fast = fixed, 1, True
                self.last_batch = fixed.batches
                self.batch_sampler, self.batch_size = self.loader.batch_sampler, fixed.batch_size
                return
            self.loader = None  # not the batching expected: read every batch from here
        if size is not None:
            self.counted += size
            self.sized = True

    def must_check(self) -> bool:
        """Whether the batch just counted must have its size read: the epoch's last, or one
        after the batch size was changed during the epoch."""
        return (
            self.epoch_batches == self.last_batch
            or self.batch_sampler.batch_size != self.batch_size
        )

    def check(self, batch: Any) -> None:
        """Read the size of the batch just counted: where it is not the one expected (the data
        or the batch size changed during the epoch), the epoch is counted with its real size up
        to it, and every batch is read from then on."""
        fixed, k = self.fixed, self.epoch_batches
        if fixed is None:
            return
        size = self._sizer(batch)
        if size == fixed.first_batches(k) - fixed.first_batches(k - 1):
            return
        self.counted += fixed.first_batches(k - 1) + (size or 0)
        self.sized = True
        self.fixed, self.loader, self.fast, self.epoch_batches = None, None, False, 0
        self.batch_sampler = None

    def epoch_began(self) -> None:
        """A training epoch begins: the last one's batches are folded into ``counted``; the
        loader's batching is read again at the first batch."""
        self._fold()

    def _fold(self) -> None:
        if self.fixed is not None:
            self.counted += self.fixed.first_batches(self.epoch_batches)
            self.sized = True
        self.fixed, self.fast, self.epoch_batches, self.batch_sampler = None, False, 0, None

    @property
    def samples(self) -> int | None:
        """Samples so far in the fit, None when no batch had a size."""
        if self.fixed is not None:
            return self.counted + self.fixed.first_batches(self.epoch_batches)
        return self.counted if self.sized else None
