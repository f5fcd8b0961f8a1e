"""The NVML energy counter's phase: where its 100 ms steps lie, and an edge placed inside one.

The counter (``nvmlDeviceGetTotalEnergyConsumption``) moves in steps on a clock of its own, so a
read at a window edge is stale by up to one period. :class:`_PhaseModel` fits the step times
(period and phase, by least squares); :class:`CounterPhase`, half of
:class:`~codecarbon_callbacks_core.hardware.nvml.NvmlGpu`, finds the steps with a short burst of
counter reads after the first edge and ``YOUNG_OBSERVATIONS`` watches of one step, then watches
one step again every ``watch_interval_s`` (as jobs on the edge-read pool, or inside ``sample()``
with a virtual clock). It keeps an anchor (a counter value at a known step), refreshed by every
edge and live update, by one read timed in the step before an expected edge where edges keep a
cadence and that edge would fall next to a step, and otherwise, while power varies, by one read
every ``anchor_interval_s`` at most. It decides which step an edge read belongs to and returns
``counter + power x time since that step``: instant power (shifted by ``INSTANT_POWER_LAG_S``),
or, at a steady load, the counter's own mean power over the steps since an earlier anchor
(``STEADY_*``), weighed by how far the latest instant reading is from it. Energies in J, times
in s on the meter's monotonic clock.

The evidence for each choice (the H200 traces, the 100 ms steps, the ~70 ms lag, the ~102 ms
instant-power clock, the error figures) is in ``docs/measurement.md``, section "NVML: the
evidence", and ``tests/core/hardware/test_nvml.py`` checks it against ``tests/data/h200_*``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

#: instant power (field 186) shows what the energy counter counts about this much later: on the
#: H200 trace the per-step counter increments match the instant-power integral best shifted by
#: 60-80 ms (rms 10 J a step, against 17 J unshifted)
INSTANT_POWER_LAG_S = 0.07
#: the longest the sampler sleeps to start a watch just before a step, s
MAX_WATCH_WAIT_S = 0.012
#: the counter period assumed until measured, s
NOMINAL_COUNTER_PERIOD_S = 0.1
#: the first watch gives up after this long, s
FIRST_WATCH_LIMIT_S = 0.5
#: a step observed farther than this from its prediction counts as a miss, s
PHASE_TOLERANCE_S = 0.015
#: steps the first watch observes (3 periods measured: about 1 ms of period uncertainty)
FIRST_WATCH_STEPS = 4
#: steps observed (the first watch's and one every YOUNG_WATCH_INTERVAL_S after it) before
#: watches slow to one every ``watch_interval_s``: the phase is then off by the mean of the
#: steps' ~1.5-ms scatter (H200 replay, predicted minus true step at edges: 8 steps -0.8 ms mean,
#: 2.0 ms rms; 16 steps 0.1 ms, 1.6 ms rms)
YOUNG_OBSERVATIONS = 16
#: how often a step is watched while the phase is young, s
YOUNG_WATCH_INTERVAL_S = 0.25
#: a step located less precisely than this (a slow read) is not used for the phase, s
MAX_STEP_RESOLUTION_S = 0.006

#: how far one step falls from the fitted line at most, whatever a short fit says, s (the H200
#: trace: steps scatter 1.5 ms rms around a 10-step local fit, 6.5 ms at worst)
STEP_JITTER_S = 0.0025

#: how far the counter's period may be from NOMINAL_COUNTER_PERIOD_S before steps say so, s
PERIOD_PRIOR_SIGMA_S = 0.00003

#: the instant-power integral since an anchor matches the counter to about this fraction of it
#: (tuned on the H200 replay: 0.06 helps varying loads a little but breaks a steady window)
ENERGY_SIGMA_FRACTION = 0.03
#: how far apart instant power and the counter may place a change of power, s: instant power
#: moves on its own ~102 ms clock, so a jump of dP watts may fall anywhere in a reading's interval.
#: Each jump since the anchor adds (dP x this)^2 to the variance of the energy since the anchor
#: (the H200 trace: over 1 s of 150-ms load phases the power integral misses the counter by 76 J
#: rms, 0.03 x the energy alone says 13 J; over 1 s of steady load 5-13 J)
POWER_JUMP_TIMING_S = 0.05
#: edges at a steady cadence (epochs): how far the next edge may fall from the last interval
#: repeated, beyond the difference of the last two intervals, s (the replay's epochs: 0-4 ms)
EDGE_CADENCE_SLACK_S = 0.005
#: a cadence whose last two intervals differ by more than this fraction of a period says too
#: little about where in a step the next edge falls: no anchor is timed for it
EDGE_CADENCE_MAX_SPREAD = 0.3
#: a read is anchored on only where its step is at least this likely
CONFIDENT_STEP_PROBABILITY = 0.9

#: At a steady load the counter's own mean power over the steps since an earlier anchor predicts
#: the step under way better than the latest instant reading: on the H200 trace at full load the
#: step's mean power is off the instant reading at its start by 46 W rms (they are uncorrelated:
#: instant power samples a ~700 W load that ripples by +-40 W on its own ~102-ms clock) and off
#: the counter's mean over the 10-20 steps before by 15-22 W rms (docs/measurement.md, "NVML:
#: the evidence", 4). The extrapolation since the step blends the two: instant power alone where
#: the load changed, the counter's mean power alone where it did not. The mean is taken over at
#: least this many steps (the steps right after a change of load are not yet the new level)
STEADY_MIN_STEPS = 3
#: the load counts as steady since that anchor only while instant power stayed within this
#: fraction of its highest reading (a step of load, a pause, an idle spell exceed it; the H200's
#: instant ripple at full load stays within ~30 %)
STEADY_RANGE_FRACTION = 0.5
#: and while the latest instant reading differs from the counter's mean power by less than
#: STEADY_AGREEMENT[1] of the larger: the counter's mean has full weight up to
#: STEADY_AGREEMENT[0], instant power from STEADY_AGREEMENT[1], linearly between
STEADY_AGREEMENT = (0.05, 0.15)

#: one counter read: (read start s, read end s, counter J)
CounterRead = tuple[float, float, float]


class _Reference:
    """A counter value at a known step and the range of instant power seen since, W."""

    __slots__ = ("k", "value_j", "lo_w", "hi_w")

    def __init__(self, k: int, value_j: float, power_w: float) -> None:
        self.k = k
        self.value_j = value_j
        self.lo_w = self.hi_w = power_w


class _PhaseModel:
    """Step times of a periodic counter: t_k = phase_s + k x period_s (k integer).

    Observed steps get integer indexes from the gaps between them (rounded with the current
    period), then a least-squares line through (k, t) gives the period and the phase. Three
    observations in a row far from their prediction mean the counter is not on this clock any
    more: the model forgets its fit, and the next watch fits it again.
    """

    #: observations kept for the fit
    MAX_STEPS = 64

    def __init__(self) -> None:
        self.period_s: float | None = None
        self.phase_s: float | None = None
        self.uncertainty_s = 0.005
        self.period_sigma_s = 0.002
        self.misses = 0
        self._steps: deque[tuple[int, float]] = deque(maxlen=self.MAX_STEPS)

    @property
    def locked(self) -> bool:
        return self.period_s is not None and self.phase_s is not None

    def step_index(self, t: float) -> int:
        assert self.period_s is not None and self.phase_s is not None
        return math.floor((t - self.phase_s) / self.period_s)

    def step_time(self, k: int) -> float:
        assert self.period_s is not None and self.phase_s is not None
        return self.phase_s + k * self.period_s

    def uncertainty_at(self, t: float) -> float:
        """How far a step near ``t`` may fall from its prediction, s: the steps' own scatter,
        plus the period's uncertainty carried over the steps since the last one observed."""
        if not self.locked or not self._steps:
            return max(self.uncertainty_s, STEP_JITTER_S)
        periods = abs(self.step_index(t) - self._steps[-1][0])
        return math.hypot(max(self.uncertainty_s, STEP_JITTER_S), periods * self.period_sigma_s)

    def observe_run(self, steps: Sequence[tuple[int, float]]) -> None:
        """Steps seen by one back-to-back burst, as (ordinal in the burst, time).

        A burst reads every few ms, so its n-th change is the n-th step: ordinals are step
        indexes even where a slow read made some step times too vague to use.
        """
        if not steps:
            return
        if self.period_s is None:
            if len({k for k, _ in steps}) < 2:
                return
            self._steps.clear()
            self._steps.extend(steps)
            self._fit()
            return
        for _, t in steps:
            self.observe(t)

    def observe(self, step_s: float) -> None:
        """One step seen at ``step_s``."""
        if self.period_s is None or self.phase_s is None or not self._steps:
            return
        k_last, t_last = self._steps[-1]
        periods = round((step_s - t_last) / self.period_s)
        k = k_last + periods
        residual = step_s - self.step_time(k)
        # the prediction's error grows with the distance from the fitted steps
        tolerance = min(
            0.4 * self.period_s, PHASE_TOLERANCE_S + 3 * abs(periods) * self.period_sigma_s
        )
        if abs(residual) > tolerance:
            self.misses += 1
            if self.misses >= 3:  # the counter is on another clock: the next watch refits
                self._steps.clear()
                self.misses = 0
                self.period_s = None
                self.phase_s = None
                logger.debug("counter phase lost; refitting")
            return
        self.misses = 0
        if k != k_last:
            self._steps.append((k, step_s))
            self._fit()

    @staticmethod
    def _line(steps: Sequence[tuple[int, float]]) -> tuple[float, float, float] | None:
        """Least squares t = phase + k x period: (period, phase, sum of squared k deviations)."""
        n = len(steps)
        mean_k = sum(k for k, _ in steps) / n
        mean_t = sum(t for _, t in steps) / n
        var_k = sum((k - mean_k) ** 2 for k, _ in steps)
        if var_k <= 0:
            return None
        slope = sum((k - mean_k) * (t - mean_t) for k, t in steps) / var_k
        # The counter's period is stable at its nominal 100.0 ms (the H200 trace: 100.008 ms),
        # while steps scatter by ~1.5 ms: a burst of 4 steps alone gives the period to ~1 %,
        # which drifts a step's place by 10 ms within a second. Weigh the prior against the
        # steps (inverse variances); a long span of steps outweighs it.
        data_weight = var_k / STEP_JITTER_S**2
        prior_weight = 1.0 / PERIOD_PRIOR_SIGMA_S**2
        if abs(slope - NOMINAL_COUNTER_PERIOD_S) < 0.2 * NOMINAL_COUNTER_PERIOD_S:
            slope = (slope * data_weight + NOMINAL_COUNTER_PERIOD_S * prior_weight) / (
                data_weight + prior_weight
            )
        return slope, mean_t - mean_k * slope, var_k

    def _fit(self) -> None:
        steps = list(self._steps)
        line = self._line(steps)
        if line is None:
            return
        # a step located through a slow read can be 10+ ms off: drop outliers, one at a time
        while len(steps) >= 4:
            slope, phase, _ = line
            residuals = [abs(t - (phase + k * slope)) for k, t in steps]
            median = sorted(residuals)[len(residuals) // 2]
            worst = max(range(len(steps)), key=residuals.__getitem__)
            if residuals[worst] <= max(0.004, 4 * 1.4826 * median):
                break
            del steps[worst]
            refit = self._line(steps)
            if refit is None:
                break
            line = refit
        slope, phase, var_k = line
        if not 0.001 < slope < 10.0:
            return
        if len(steps) < len(self._steps):
            self._steps = deque(steps, maxlen=self.MAX_STEPS)
        self.period_s = slope
        self.phase_s = phase  # t at k = 0
        n = len(steps)
        # how far one step may fall from the line (the steps' scatter, not the line's error)
        residuals = [t - (phase + k * slope) for k, t in steps]
        spread = math.sqrt(sum(r * r for r in residuals) / (n - 2)) if n > 2 else 0.002
        self.uncertainty_s = min(0.015, max(0.001, spread))
        # the period's own error: the steps' scatter over their span, bounded by the prior's
        self.period_sigma_s = 1.0 / math.sqrt(
            var_k / max(spread, STEP_JITTER_S) ** 2 + 1.0 / PERIOD_PRIOR_SIGMA_S**2
        )

    @property
    def observations(self) -> int:
        return len(self._steps)


class CounterPhase:
    """The counter-phase half of :class:`~codecarbon_callbacks_core.hardware.nvml.NvmlGpu`.

    It watches the energy counter's steps, keeps the anchor and places edges and the run's
    origin inside a step. The device class owns the state declared below (set in its
    ``_reset_state``) and the NVML reads and power integration this class calls; the methods
    that need the lock say so.
    """

    _nvml: Any
    _started: bool
    name: str
    power_source: str | None
    sample_interval_s: float | None
    watch_interval_s: float
    anchor_interval_s: float | None
    _clock: Callable[[], float]
    _sleep: Callable[[float], None]
    _lock: threading.Lock
    _phase: _PhaseModel
    _anchor: tuple[int, float] | None
    #: the last anchors, each with the instant power's range since it (the counter's mean power
    #: over the steady steps before an edge)
    _references: deque[_Reference]
    _blend: tuple[float, float] | None = None
    #: (the time of the last energy placed, s; the weight instant power had in its
    #: extrapolation: 1 where the counter's mean power had none), for its uncertainty
    _placed_at: tuple[float, float] = (-math.inf, 1.0)
    #: the last edge reads' times, s (the cadence that times the next anchor)
    _edge_times: tuple[float, ...] = ()
    #: (mid of the step just before the next expected edge's step, s; the last edge, s): an
    #: anchor read there decides an edge read next to that step by its value alone
    _edge_anchor: tuple[float, float] | None = None
    #: the variance the power's jumps since the anchor add to the energy since it, J^2
    _jump_var_j2: float = 0.0
    _power_w: float
    _power_lo: float
    _power_hi: float
    _next_watch_s: float
    _next_anchor_s: float
    _watch_skips: int
    _counter_failed_at: tuple[float, float] | None
    _origin_read: CounterRead | None
    _origin_j: float | None
    _origin_provisional: bool
    _last_good: tuple[float, float] | None
    _start_s: float
    _start_power_w: float
    _power_t: float | None

    def _read_counter(self) -> CounterRead:
        raise NotImplementedError

    def _read_power_w(self) -> float | None:
        raise NotImplementedError

    def _integrate_to(self, now_s: float, power_w: float | None) -> None:
        raise NotImplementedError

    def _integral_at(self, t: float) -> float:
        raise NotImplementedError

    def _counter_broken(self, now_s: float, error: BaseException) -> None:
        raise NotImplementedError

    def _note_power(self, previous_w: float, power_w: float) -> None:
        """A new power reading: its jump widens the energy since the anchor (lock held)."""
        self._jump_var_j2 += ((power_w - previous_w) * POWER_JUMP_TIMING_S) ** 2
        for reference in self._references:
            reference.lo_w = min(reference.lo_w, power_w)
            reference.hi_w = max(reference.hi_w, power_w)

    def _set_anchor(self, k: int, value_j: float) -> None:
        """The counter read ``value_j`` at step ``k``: the new anchor (lock held)."""
        self._anchor = (k, value_j)
        references = self._references
        if references and references[-1].k == k:
            return
        references.append(_Reference(k, value_j, self._power_w))

    def _plan_edge_anchor(self, edge_s: float) -> None:
        """After an edge read (lock held): where the edges keep a cadence (epochs), time one
        anchor read in the step before the next expected edge, where that edge would fall too
        near a step to place by timing; else leave anchors to ``anchor_interval_s``.

        An edge read within a few ms of a predicted step is ambiguous by timing, and the power
        integral since an old anchor can miss by half a step over a varying load. The counter
        moves at every step: an anchor read in the step just before the edge's tells the two
        steps apart by equality, whatever the load did (one read where the old watcher made ~10
        a second).
        """
        times = (*self._edge_times[-2:], edge_s)
        self._edge_times = times
        self._edge_anchor = None
        phase = self._phase
        if len(times) < 3 or not phase.locked or self.anchor_interval_s is None:
            return
        period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
        interval = times[2] - times[1]
        spread = abs(interval - (times[1] - times[0])) + EDGE_CADENCE_SLACK_S
        if spread > EDGE_CADENCE_MAX_SPREAD * period or interval < 2 * period:
            return
        # no untimed anchor before the next edge: this one decides it or timing does
        self._next_anchor_s = max(self._next_anchor_s, edge_s + interval + spread)
        expected = edge_s + interval
        k = phase.step_index(expected + period / 2)  # the step nearest the expected edge
        guard = 0.0025 + 3 * phase.uncertainty_at(expected) + 0.001 + spread
        if abs(expected - phase.step_time(k)) > guard:
            return  # timing alone will place it
        self._edge_anchor = (phase.step_time(k) - period / 2, edge_s)

    def _edge_anchor_due(self, now_s: float) -> bool:
        """Whether the edge-timed anchor is due at ``now_s`` (drops a plan whose step passed)."""
        plan = self._edge_anchor
        if plan is None:
            return False
        period = self._phase.period_s or NOMINAL_COUNTER_PERIOD_S
        if now_s > plan[0] + 0.15 * period:
            self._edge_anchor = None  # missed (a late tick or an early edge): timing decides
            return False
        return now_s >= plan[0] - 0.2 * period

    def _refresh_anchor(self, now_s: float) -> None:
        """One counter read in the middle of a step (unambiguous): a fresh anchor, so that an
        edge read next to a step can tell which side of it it saw (sampler thread)."""
        phase = self._phase
        if not phase.locked:
            return
        period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
        into_step = now_s - phase.step_time(phase.step_index(now_s))
        if not 0.3 * period <= into_step <= 0.6 * period:
            return  # a later sample() call lands nearer the middle of a step
        self._edge_anchor = None
        read = self._read_counter()
        with self._lock:
            self._step_of_read(read, update=True)
        self._next_anchor_s = now_s + self.anchor_interval_s  # type: ignore[operator]

    def _watch(self, now_s: float) -> None:
        """Observe counter steps (sampler thread)."""
        phase = self._phase
        if not phase.locked:
            self._first_watch()
            return
        margin = 0.003 + 3 * phase.uncertainty_s
        k = phase.step_index(now_s + margin) + 1
        target = phase.step_time(k)
        wait = target - margin - now_s
        # sleep little on the sampler: wait for a tick that lands just before a step, unless the
        # ticks keep missing (25-ms ticks against a 100-ms counter can stay out of phase)
        limit = (
            MAX_WATCH_WAIT_S if self._watch_skips < 4 else (self.sample_interval_s or 0.025) + 0.005
        )
        if wait > limit:
            self._watch_skips += 1
            return
        self._watch_skips = 0
        if wait > 0:
            self._sleep(wait)
        # read until the step shows; a full period at most (a late step is still found)
        self._burst(until_changes=1, limit_s=target + (phase.period_s or 0.1) + margin)
        # watch often while the period is young, then every watch_interval_s
        young = phase.observations < YOUNG_OBSERVATIONS
        self._next_watch_s = now_s + (
            min(YOUNG_WATCH_INTERVAL_S, self.watch_interval_s) if young else self.watch_interval_s
        )

    def _first_watch(self) -> None:
        """Read back to back until FIRST_WATCH_STEPS steps (<= FIRST_WATCH_LIMIT_S)."""
        with self._lock:
            self._anchor = None  # step indexes restart with a new fit
            self._references.clear()
        self._burst(until_changes=FIRST_WATCH_STEPS, limit_s=self._clock() + FIRST_WATCH_LIMIT_S)
        self._next_watch_s = self._clock() + (
            min(YOUNG_WATCH_INTERVAL_S, self.watch_interval_s)
            if self._phase.locked
            else 4 * self.watch_interval_s
        )

    def _burst(self, *, until_changes: int, limit_s: float) -> None:
        """Back-to-back counter reads until ``until_changes`` steps are seen or ``limit_s``."""
        previous = self._read_counter()
        first = previous
        changes: list[CounterRead] = []  # (step time, resolution, value J)
        while len(changes) < until_changes and previous[1] < limit_s and self._started:
            current = self._read_counter()
            # keep the power integral going meanwhile (microseconds a read): it decides which
            # side of a step an edge reading is on, and a burst can last 0.35 s
            power_w = self._read_power_w()
            with self._lock:
                self._integrate_to(max(current[1], self._power_t or current[1]), power_w)
            if current[2] != previous[2]:
                mid_prev = (previous[0] + previous[1]) / 2
                mid_cur = (current[0] + current[1]) / 2
                changes.append(((mid_prev + mid_cur) / 2, (mid_cur - mid_prev) / 2, current[2]))
            previous = current
        with self._lock:
            phase = self._phase
            # a step bracketed by a slow read (up to 26 ms) says little: leave it out
            phase.observe_run(
                [(k, c[0]) for k, c in enumerate(changes) if c[1] <= MAX_STEP_RESOLUTION_S]
            )
            if changes and phase.locked:
                step_s, _, value_j = changes[-1]
                k = phase.step_index(step_s + phase.period_s / 2)  # type: ignore[operator]
                if self._anchor is None or k >= self._anchor[0]:
                    self._set_anchor(k, value_j)
            if self._origin_read is None:
                self._origin_read = first
            self._resolve_origin()
            if self._origin_j is not None and phase.locked:
                # the counter as of the burst's last read: where power takes over if it fails
                mid = (previous[0] + previous[1]) / 2
                step_s = phase.step_time(phase.step_index(mid))
                since_start_j = previous[2] - self._origin_j
                if self._last_good is None or step_s > self._last_good[0]:
                    self._last_good = (step_s, max(0.0, since_start_j))

    # -- edges ---------------------------------------------------------------------------------

    def _expected_counter_j(self, k: int) -> float | None:
        """The counter at step k as the anchor and the power integral predict it."""
        if self._anchor is None or not self._phase.locked:
            return None
        k_anchor, value_j = self._anchor
        if k == k_anchor:
            return value_j
        phase = self._phase
        lag_s = INSTANT_POWER_LAG_S if self.power_source == "instant" else 0.0
        return (
            value_j
            + self._integral_at(phase.step_time(k) + lag_s)
            - self._integral_at(phase.step_time(k_anchor) + lag_s)
        )

    def _step_of_read(self, read: CounterRead, update: bool) -> float | None:
        """The time of the counter step whose value a read returned; None without a phase."""
        phase = self._phase
        if not phase.locked:
            return None
        t_a, t_b, value_j = read
        mid = (t_a + t_b) / 2
        k = phase.step_index(mid)
        half_read = (t_b - t_a) / 2
        scatter_s = phase.uncertainty_at(mid)
        guard = half_read + 3 * scatter_s + 0.001
        candidates = [k]
        if mid - phase.step_time(k) < guard:
            candidates = [k - 1, k]
        elif phase.step_time(k + 1) - mid < guard:
            candidates = [k, k + 1]
        anchor = self._anchor
        if len(candidates) > 1:
            predicted_step = phase.step_time(candidates[1])
            if anchor is not None and anchor[0] == candidates[0]:
                # the counter changes at every step: same value, same step; else the next one
                k = candidates[0] if value_j == anchor[1] else candidates[1]
            elif anchor is not None and anchor[0] == candidates[1]:
                # the anchor saw the later step (read concurrently): same value or before it
                k = candidates[1] if value_j == anchor[1] else candidates[0]
            elif anchor is not None and anchor[0] == candidates[0] - 1 and value_j == anchor[1]:
                k = anchor[0]  # the counter is later than predicted
            elif abs(mid - predicted_step) > half_read + 2 * scatter_s:
                # clearly on one side of the predicted step: the timing decides
                k = candidates[1] if mid > predicted_step else candidates[0]
            else:
                # too close to call by timing: timing and the energy since the anchor weigh
                # the two steps; an edge too close to call is placed between them
                k, confident = self._weigh_candidates(candidates, mid, scatter_s, value_j)
                update = update and confident
        if update and (self._anchor is None or k >= self._anchor[0]):
            self._set_anchor(k, value_j)
            self._power_lo = self._power_hi = self._power_w  # the power varies from here on
            self._jump_var_j2 = 0.0
        return phase.step_time(k)

    def _weigh_candidates(
        self, candidates: list[int], mid: float, scatter_s: float, value_j: float
    ) -> tuple[int, bool]:
        """The likelier of two steps for a read, and whether it is certain enough to anchor on;
        sets ``_blend`` (the other step's time and its probability) for ``_estimate_at``."""
        phase = self._phase
        boundary = phase.step_time(candidates[1])
        # timing: the probability that the step at ``boundary`` came before the read's middle
        later = 0.5 * (1.0 + math.erf((mid - boundary) / (scatter_s * math.sqrt(2.0))))
        weights = [max(1e-9, 1.0 - later), max(1e-9, later)]
        expected = [self._expected_counter_j(c) for c in candidates]
        if expected[0] is not None and expected[1] is not None:
            # the power integral since the anchor is good to a few % of the energy it spans
            # and a jump of power may fall ~50 ms from where instant power shows it
            sigma_j = math.hypot(
                2.0 + ENERGY_SIGMA_FRACTION * abs(expected[1] - (self._anchor or (0, 0.0))[1]),
                math.sqrt(self._jump_var_j2),
            )
            for i, e in enumerate(expected):
                weights[i] *= math.exp(-0.5 * ((value_j - e) / sigma_j) ** 2)  # type: ignore[operator]
        total = sum(weights)
        probabilities = [w / total for w in weights] if total > 0 else [0.5, 0.5]
        best = 0 if probabilities[0] >= probabilities[1] else 1
        other = 1 - best
        self._blend = (phase.step_time(candidates[other]), probabilities[other])
        return candidates[best], probabilities[best] >= CONFIDENT_STEP_PROBABILITY

    def _estimate_at(self, read: CounterRead, t: float, power_w: float) -> float:
        """Counter-scale energy at ``t`` from one counter read (lock held), J."""
        self._blend = None
        step_s = self._step_of_read(read, update=True)
        if step_s is None:  # no phase: the read is on average half a period stale
            period = self._phase.period_s or NOMINAL_COUNTER_PERIOD_S
            step_s = (read[0] + read[1]) / 2 - period / 2
        blend, self._blend = self._blend, None
        estimate = self._placed(read, step_s, t, power_w)
        placed_at = self._placed_at
        if blend is None:
            return estimate
        other_step_s, other_probability = blend
        other = self._placed(read, other_step_s, t, power_w)
        self._placed_at = placed_at
        return estimate + other_probability * (other - estimate)

    def _placed(self, read: CounterRead, step_s: float, t: float, power_w: float) -> float:
        """Counter-scale energy at ``t`` from a read of the step at ``step_s``, J."""
        age_s = t - step_s
        lag_s = INSTANT_POWER_LAG_S if self.power_source == "instant" else 0.0
        if age_s <= lag_s:
            extrapolated_j = power_w * age_s
        else:
            # instant power shows what the counter counts ~70 ms later: the readings of the
            # last (age - lag) seconds stand for the start of the step, the latest for its last lag
            extrapolated_j = (
                self._integral_at(t) - self._integral_at(step_s + lag_s) + power_w * lag_s
            )
        counter_w = self._steady_counter_power_w(read[2], step_s, power_w)
        if counter_w is None:
            self._placed_at = (t, 1.0)
            return read[2] + extrapolated_j
        low, high = STEADY_AGREEMENT
        disagreement = abs(power_w - counter_w) / max(power_w, counter_w)
        weight = min(1.0, max(0.0, (disagreement - low) / (high - low)))  # instant power's
        self._placed_at = (t, weight)
        return read[2] + weight * extrapolated_j + (1.0 - weight) * counter_w * age_s

    def _steady_counter_power_w(
        self, value_j: float, step_s: float, power_w: float
    ) -> float | None:
        """The counter's mean power from the newest anchor at least STEADY_MIN_STEPS before the
        step at ``step_s`` to that step, W, where instant power stayed steady since (within
        STEADY_RANGE_FRACTION of its highest reading, ``power_w`` included); else None."""
        phase = self._phase
        if not phase.locked or not self._references:
            return None
        period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
        k = phase.step_index(step_s + period / 2)
        # the oldest anchor the load has been steady since: the longest mean
        for reference in self._references:
            high = max(reference.hi_w, power_w)
            low = min(reference.lo_w, power_w)
            if (
                reference.k <= k - STEADY_MIN_STEPS
                and 0 <= high - low <= STEADY_RANGE_FRACTION * high
            ):
                break
        else:
            return None
        span_s = step_s - phase.step_time(reference.k)
        energy_j = value_j - reference.value_j
        if span_s <= 0 or energy_j < 0:
            return None
        return energy_j / span_s

    def _resolve_origin(self, force: bool = False) -> None:
        """Place the counter-scale energy at start within its step (lock held).

        The meter reads every component right at start, before the sampler has found the
        counter's phase: the origin is then provisional (half a period assumed) and is placed
        again, once, from the same reading when the phase is known. Values returned before stay
        as they were (clamped non-decreasing), so windows still tile the run exactly; the window
        that spans the change absorbs the correction (at most half a period of power).
        """
        if self._origin_read is None:
            return
        if self._origin_j is not None and not (self._origin_provisional and self._phase.locked):
            return
        if not (self._phase.locked or force):
            return
        self._origin_j = self._estimate_at(self._origin_read, self._start_s, self._start_power_w)
        self._origin_provisional = not self._phase.locked
