"""A session's checkpoint state: what is saved, checked when loaded, and applied on resume.

The state is a JSON-able dict (never pickle): ``version`` (:data:`STATE_VERSION`), ``framework``,
``tracker`` (the tracker's ``state_dict()``: run_id and totals; in a distributed run, the
combined totals at the last point every rank reached plus what this rank measured since),
``done`` (units of progress done) and ``epochs`` (the per-epoch figures so far). Each function
takes what it reads as arguments; the session keeps the state between a load and the next run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker

logger = logging.getLogger(__name__)
#: the session's log, where its arguments left out of a checkpoint are named
_SESSION_LOG = logging.getLogger("codecarbon_callbacks.session")

#: the version of the saved state's layout
STATE_VERSION = 1


def tracker_state(
    tracker: BaseEmissionsTracker | None,
    *,
    running: bool,
    resume_pending: bool,
    last_sync: tuple[EmissionsData, EmissionsData] | None,
) -> dict[str, Any] | None:
    """The tracker's part of the state, or None when it has none to give.

    Args:
        tracker: the session's current, last or given tracker.
        running: whether a run is open (a tracker is asked only then, or when no loaded state
            waits for the next run: that state is newer than an idle tracker's).
        resume_pending: whether a loaded state waits for the next fit run.
        last_sync: (combined totals, this rank's totals) at the last collective point of a
            distributed run, else None. No collective is started here: checkpoints are not
            always saved on every rank.
    """
    state: dict[str, Any] | None = None
    if tracker is not None and (running or not resume_pending):
        try:
            state = tracker.state_dict()
        except Exception as e:
            logger.debug("tracker.state_dict() failed: %s", e)
    if state is not None and running and last_sync:
        from codecarbon_callbacks.distributed import combined_state

        state = combined_state(state, *last_sync)
    return state


def build_state(
    framework: str,
    tracker: dict[str, Any] | None,
    done: float,
    epochs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The JSON-able state a checkpoint keeps (floats for any number-like value)."""
    state = {
        "version": STATE_VERSION,
        "framework": framework,
        "tracker": tracker,
        "done": done,
        "epochs": [dict(e) for e in epochs],
    }
    return json.loads(json.dumps(state, default=float))


def checked_state(state: Any) -> dict[str, Any]:
    """A JSON copy of a loaded state.

    Raises:
        ValueError: ``state`` is not a dict from ``EmissionsSession.state_dict()``.
    """
    if not isinstance(state, Mapping) or "tracker" not in state:
        raise ValueError(f"state must be a dict from EmissionsSession.state_dict(), got {state!r}")
    return json.loads(json.dumps(dict(state)))


def apply_late(
    tracker: BaseEmissionsTracker, state: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]] | None:
    """A state loaded after its fit run began, applied to the running tracker.

    Returns the run's epochs with the saved ones first, or None when the tracker refused the
    state (logged; the run goes on as a new one).
    """
    try:
        tracker.load_state_dict(state["tracker"])
    except Exception as e:
        logger.warning("could not resume the emissions run: %s", e)
        return None
    return [dict(e) for e in state.get("epochs", [])] + [dict(e) for e in epochs]


class ResumeMixin:
    """A session's checkpoint methods: its arguments and their digest, its state, and loading
    one. :class:`~codecarbon_callbacks.session.EmissionsSession` holds the state they use."""

    framework: str
    _arguments: dict[str, Any]
    _configuration_key: str | None
    _run: Any  # the session's open run (session._Run), or None
    _resume_state: dict[str, Any] | None
    _epochs: list[dict[str, Any]]

    if TYPE_CHECKING:

        @property
        def tracker(self) -> BaseEmissionsTracker | None: ...

    def checkpoint_arguments(self) -> dict[str, Any]:
        """This session's arguments as a checkpoint may keep them: JSON-able, no secret (see
        :func:`checkpoint_arguments`; the names left out are logged at debug level). An adapter
        whose framework rebuilds callbacks from saved arguments (HF's Trainer) saves these."""
        from codecarbon_callbacks.arguments import checkpoint_arguments

        return checkpoint_arguments(self._arguments, log=_SESSION_LOG)

    def configuration_key(self) -> str:
        """A digest naming this session's configuration (:func:`configuration_key`): the same for
        the same arguments in every process, different for callbacks that write elsewhere."""
        # Lightning reads its callbacks' state_key at every hook call (some ten per batch):
        # the arguments are fixed at construction, so the digest is computed once
        key = self._configuration_key
        if key is None:
            from codecarbon_callbacks.arguments import configuration_key

            key = self._configuration_key = configuration_key(self._arguments)
        return key

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state for a checkpoint: the tracker's run_id and totals, epochs done."""
        run = self._run
        saved = tracker_state(
            self.tracker,
            running=run is not None,
            resume_pending=self._resume_state is not None,
            last_sync=run.last_sync if run is not None else None,
        )
        if saved is None and self._resume_state is not None:
            return dict(self._resume_state)
        done = run.points[-1].done if run is not None and run.points else 0.0
        return build_state(self.framework, saved, done, self._epochs)

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Resume: the next fit run keeps the saved run_id and adds the saved totals."""
        if not state:
            return
        self._resume_state = checked_state(state)
        run = self._run
        if run is not None and run.stage == "fit" and state.get("tracker"):
            # Restored after the run began (e.g. a framework that restores late): apply now.
            epochs = apply_late(run.tracker, self._resume_state, self._epochs)
            if epochs is not None:
                self._epochs = epochs
                self._resume_state = None


__all__ = [
    "STATE_VERSION",
    "ResumeMixin",
    "apply_late",
    "build_state",
    "checked_state",
    "tracker_state",
]
