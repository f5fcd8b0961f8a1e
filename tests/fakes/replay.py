"""Replay a trace through a component in virtual time: a sampler and window edges, one thread.

``replay(component, clock, start_s, edges_s, sampler_interval_s)`` plays what the meter does:
``start()`` at ``start_s``, ``sample()`` every ``sampler_interval_s`` (with a deterministic jitter
when asked), ``energy_j()`` at each edge; counter reads advance the virtual clock by their
duration, as on the real GPU (on the sampler's own timeline: an edge happens at its time even
while the sampler is still in a counter watch, as two threads would). Returns the energy at each
edge (J since start) and the clock time of each edge.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class ReplayResult:
    edge_times_s: list[float]
    energies_j: list[float]
    #: what the meter's origin snapshot read at start (``read_at_start``), J
    start_energy_j: float = 0.0

    def run_j(self) -> float:
        """The run's energy as the meter gives it: the last edge minus the start snapshot, J."""
        return self.energies_j[-1] - self.start_energy_j

    def windows_j(self) -> list[float]:
        return [b - a for a, b in zip(self.energies_j, self.energies_j[1:])]


def replay(
    component: Any,
    clock: Any,
    *,
    start_s: float,
    edges_s: Sequence[float],
    sampler_interval_s: float = 0.025,
    jitter_s: float = 0.0,
    seed: int = 0,
    read_at_start: bool = True,
) -> ReplayResult:
    rng = random.Random(seed)
    clock.jump(start_s)
    component.start(start_s)
    start_energy_j = 0.0
    if read_at_start:  # the meter's origin snapshot, before the sampler has run at all
        start_energy_j = component.energy_j(start_s)
        clock.jump(start_s)
    next_tick = start_s + sampler_interval_s
    sampler_free_at = start_s  # the sampler thread is busy (a counter watch) until then
    times: list[float] = []
    energies: list[float] = []
    for edge in sorted(edges_s):
        while next_tick < edge:
            tick = max(next_tick, sampler_free_at)
            if tick >= edge:
                break
            clock.jump(tick)
            component.sample(tick)
            sampler_free_at = clock.now()
            next_tick = (
                tick + sampler_interval_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
            )
        # the edge runs on the training thread at its own time, whatever the sampler is doing
        clock.jump(edge)
        times.append(edge)
        energies.append(component.energy_j(edge))
    return ReplayResult(times, energies, start_energy_j)


def plain_counter_windows_j(
    trace: Any, edge_times_s: Sequence[float], read_s: float = 0.003
) -> list[float]:
    """What plain counter deltas give at the same edges (a read samples mid-read), J."""
    values = [trace.counter_mj(t + read_s / 2) / 1000.0 for t in edge_times_s]
    return [b - a for a, b in itertools.pairwise(values)]


def true_windows_j(trace: Any, edge_times_s: Sequence[float]) -> list[float]:
    values = [trace.true_energy_mj(t) / 1000.0 for t in edge_times_s]
    return [b - a for a, b in itertools.pairwise(values)]


def cv(values: Sequence[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values)


def rms_relative_error(measured: Sequence[float], truth: Sequence[float]) -> float:
    return (sum(((m - t) / t) ** 2 for m, t in zip(measured, truth)) / len(truth)) ** 0.5


def max_relative_error(measured: Sequence[float], truth: Sequence[float]) -> float:
    return max(abs(m - t) / t for m, t in zip(measured, truth))
