"""RAPL package counters that mirror one another: recognised while measuring, counted once.

On multi-die AMD parts (Threadripper, EPYC, Zen 1/2) the Linux powercap tree has one package zone
per die (``package-0-die-0``, ``package-0-die-1``), each a mirror of the same socket-wide counter:
summed, a 60 W socket reads 120 W. Intel multi-die parts (Cascade Lake-AP, ...) name their zones
the same way but have one counter per die, which must be summed. Names cannot tell them apart;
the counters can.

The rule (:class:`MirrorJudge`), applied to the package zones (never psys, never DRAM):

- at ``start()``, a counter whose raw value differs from every earlier counter's by more than
  ``RAW_TOLERANCE_UJ`` is distinct at once (distinct counters started at unrelated values);
  a counter reading zero is distinct too (it is never taken for another counter's mirror);
- the others are pending: on each sampler interval the judge reads all of them back to back and
  compares their increments with the earlier counters'. A counter that moved (non-zero) within
  ``RELATIVE_TOLERANCE`` of an earlier counted one, with raw values still within tolerance,
  ``CONFIRMING_INTERVALS`` intervals in a row, is that counter's mirror; an interval where it
  moved differently from every earlier counted one makes it distinct;
- a pending counter is not counted (it reports 0 J); a distinct one counts everything since
  ``start()`` from then on (the window spanning the decision absorbs it; energies stay
  non-decreasing); a mirror stays at 0 J. The decision is final, logged once, and in
  ``describe()`` (``mirror_of``), which the record's method details carry.

Nothing here blocks ``start()``: the judge only uses reads the sampler makes anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codecarbon_callbacks_core.hardware.rapl import RaplDomain

logger = logging.getLogger(__name__)

#: two increments within this fraction of the larger count as the same movement
RELATIVE_TOLERANCE = 0.01
#: raw counters further apart than this (µJ), beyond the tolerance on the increment, are distinct
RAW_TOLERANCE_UJ = 50_000
#: identical movements in a row that confirm a mirror
CONFIRMING_INTERVALS = 3

PENDING = "pending"
DISTINCT = "distinct"
MIRROR = "mirror"


class MirrorJudge:
    """Decides, for a set of package zones, which mirror an earlier one.

    Args:
        domains: the package zones, in sysfs order (the first is always counted).
    """

    def __init__(self, domains: Sequence[RaplDomain]) -> None:
        self.domains = list(domains)
        self._lock = threading.Lock()
        self._last_total_uj: list[int] = []
        self._matches: dict[tuple[int, int], int] = {}
        for domain in self.domains:
            domain.mirror_judge = self

    def start(self) -> None:
        """Decide what the raw values at start already tell (no extra read)."""
        with self._lock:
            self._matches.clear()
            self._last_total_uj = [0] * len(self.domains)
            for i, domain in enumerate(self.domains):
                domain.mirror_state = PENDING
                domain.mirror_of = None
                raw = domain.last_raw_uj
                earlier = [d.last_raw_uj for d in self.domains[:i]]
                if i == 0 or raw == 0 or all(_raw_apart(raw, e, 0) for e in earlier):
                    domain.mirror_state = DISTINCT
            self._report()

    @property
    def pending(self) -> bool:
        return any(d.mirror_state == PENDING for d in self.domains)

    def judge(self, now_s: float) -> None:
        """One interval: read every zone back to back and compare increments (sampler)."""
        if not self.pending:
            return
        for domain in self.domains:
            domain.advance_locked(now_s)
        with self._lock:
            totals = [d.total_uj for d in self.domains]
            deltas = [t - last for t, last in zip(totals, self._last_total_uj)]
            self._last_total_uj = totals
            for i, domain in enumerate(self.domains):
                if domain.mirror_state == PENDING:
                    self._judge_one(i, deltas)
            self._report()

    def _judge_one(self, i: int, deltas: list[int]) -> None:
        domain = self.domains[i]
        candidates = [j for j in range(i) if self.domains[j].mirror_state != MIRROR]
        if deltas[i] <= 0:
            return  # no movement: no evidence either way
        moved_alike = False
        for j in candidates:
            other = self.domains[j]
            same = _same_movement(deltas[i], deltas[j]) and not _raw_apart(
                domain.last_raw_uj, other.last_raw_uj, max(deltas[i], deltas[j])
            )
            self._matches[(i, j)] = self._matches.get((i, j), 0) + 1 if same else 0
            moved_alike = moved_alike or same
            if self._matches[(i, j)] >= CONFIRMING_INTERVALS:
                domain.mirror_state = MIRROR
                domain.mirror_of = other.name
                return
        if not moved_alike:
            domain.mirror_state = DISTINCT

    def _report(self) -> None:
        for domain in self.domains:
            if domain.mirror_state != PENDING and not domain.mirror_reported:
                domain.mirror_reported = True
                if domain.mirror_state == MIRROR:
                    logger.info(
                        "RAPL: %s mirrors %s (identical movement over %d intervals): counted once",
                        domain.name,
                        domain.mirror_of,
                        CONFIRMING_INTERVALS,
                    )
                elif len(self.domains) > 1:
                    logger.debug("RAPL: %s is a distinct package counter: summed", domain.name)


def _same_movement(a_uj: int, b_uj: int) -> bool:
    return a_uj > 0 and b_uj > 0 and abs(a_uj - b_uj) <= RELATIVE_TOLERANCE * max(a_uj, b_uj)


def _raw_apart(a_uj: int, b_uj: int, delta_uj: int) -> bool:
    return abs(a_uj - b_uj) > RAW_TOLERANCE_UJ + RELATIVE_TOLERANCE * delta_uj


def judge_packages(domains: Sequence[RaplDomain]) -> MirrorJudge | None:
    """Attach one judge to the package zones when there are several (None otherwise)."""
    packages = [d for d in domains if d.kind == "cpu"]
    return MirrorJudge(packages) if len(packages) > 1 else None
