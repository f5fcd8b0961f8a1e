"""Training overhead per framework on CPU, ours beside CodeCarbon 3.3.2, many short epochs.

``python benchmarks/framework_bench.py --framework lightning --epochs 100 --rounds 5`` trains a tiny
model (a few batches per epoch, a validation pass each epoch) with three variants, alternated in
each round: no callback, our ``EmissionsCallback`` and a CodeCarbon callback written the way a
user writes one today (``start()`` at the beginning of training, ``start_task()`` /
``stop_task()`` around each epoch, ``stop()`` at the end). It prints one JSON line.

Two measures of overhead:

- **own cost**: the time spent inside the callback's hook methods (each wrapped with
  ``time.perf_counter``) plus the CPU time of every thread started from inside a hook (or from such
  a thread: CodeCarbon's timers restart themselves), over the run's wall time. Stable to a few
  tenths of a percent even on a shared machine.
- **wall-time ratio**: the fastest of the rounds with the callback over the fastest without. On
  this kind of machine two identical runs differ by up to 10% in one round and by about +-3%
  after taking the fastest, so this figure only shows gross overheads;
- **process CPU-time ratio** (a third view): the least CPU time of the whole process around fit,
  with the callback over without; other work on the machine inflates it less than wall time.

Both trackers run offline for France and write no file (``save_to_file=False``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import CODECARBON_KWARGS, Row, emit, fmt_ms, fmt_pct, median, run_script

logger = logging.getLogger(__name__)

FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "keras")
DEFAULT_FRAMEWORKS = ("lightning", "transformers", "keras")
VARIANTS = ("none", "ours", "codecarbon")
FRAMEWORK_PACKAGES = frozenset({"lightning", "pytorch_lightning", "transformers", "keras"})

#: hooks that begin or end a run (the rest is the per-epoch cost)
RUN_EDGE_HOOKS = frozenset(
    {
        "setup",
        "teardown",
        "on_fit_start",
        "on_fit_end",
        "on_train_start",
        "on_train_end",
        "on_train_begin",
        "on_init_end",
    }
)

#: epochs per run: about 1.5 s without a callback on 2 cores (an epoch is 4 train + 2 val batches)
DEFAULT_EPOCHS = {"lightning": 300, "pytorch_lightning": 300, "transformers": 80, "keras": 100}
DEFAULT_ROUNDS = 5

N_TRAIN = 64
N_VAL = 32
BATCH = 16
FEATURES = 32


# -- accounting: time inside hooks, CPU of the threads the hooks start --------------------------


class Accounting:
    """Time inside wrapped hooks, and CPU time of threads started from them (process-wide)."""

    def __init__(self) -> None:
        self.depth = 0
        self.hook_s = 0.0
        #: the training thread's CPU time inside the hooks (insensitive to other processes' load)
        self.hook_cpu_s = 0.0
        self.per_hook_s: dict[str, float] = defaultdict(float)
        self.per_hook_cpu_s: dict[str, float] = defaultdict(float)
        #: calls timed (outermost only), in all and per hook
        self.calls = 0
        self.per_hook_calls: dict[str, int] = defaultdict(int)
        self.thread_cpu_s = 0.0
        self.owned: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._installed = False

    def reset(self) -> None:
        self.depth = 0
        self.hook_s = 0.0
        self.hook_cpu_s = 0.0
        self.per_hook_s = defaultdict(float)
        self.per_hook_cpu_s = defaultdict(float)
        self.calls = 0
        self.per_hook_calls = defaultdict(int)
        self.thread_cpu_s = 0.0
        self.owned = []

    def install(self) -> None:
        """Patch threading so that threads started from a hook report their CPU time."""
        if self._installed:
            return
        self._installed = True
        account = self
        original_start = threading.Thread.start
        original_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

        def start(thread: threading.Thread) -> None:
            parent = threading.current_thread()
            if (account.depth > 0 and parent is threading.main_thread()) or getattr(
                parent, "_bench_owned", False
            ):
                thread._bench_owned = True  # type: ignore[attr-defined]
                with account._lock:
                    account.owned.append(thread)
            original_start(thread)

        def bootstrap_inner(thread: threading.Thread) -> None:
            try:
                original_bootstrap(thread)
            finally:
                if getattr(thread, "_bench_owned", False):
                    cpu = time.thread_time()  # this thread's whole CPU time, read in the thread
                    with account._lock:
                        account.thread_cpu_s += cpu
                    thread._bench_done = True  # type: ignore[attr-defined]

        threading.Thread.start = start  # type: ignore[method-assign]
        threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]

    def finish_threads(self, wait_s: float = 1.0) -> float:
        """CPU time of owned threads, waiting briefly for them; live ones are read via psutil."""
        deadline = time.perf_counter() + wait_s
        for thread in list(self.owned):
            thread.join(max(0.0, deadline - time.perf_counter()))
        alive_cpu = 0.0
        alive = [
            t
            for t in self.owned
            if not getattr(t, "_bench_done", False) and t.native_id is not None
        ]
        if alive:
            import psutil

            times = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
            alive_cpu = sum(times.get(t.native_id, 0.0) for t in alive)  # type: ignore[arg-type]
        with self._lock:
            return self.thread_cpu_s + alive_cpu

    def wrap_hooks(self, callback: Any) -> Any:
        """Wrap each overridden hook of ``callback`` (an instance attribute shadows the method)."""
        names = [
            n
            for n in dir(type(callback))
            if n.startswith("on_") or n in ("setup", "teardown", "state_dict", "load_state_dict")
        ]
        for name in names:
            try:
                method = getattr(callback, name)
            except Exception:
                continue
            if not callable(method) or getattr(method, "_is_default", False):
                continue  # Keras skips default (no-op) batch hooks: keep them recognisable
            owner = next((c for c in type(callback).__mro__ if name in vars(c)), None)
            if owner is not None and owner.__module__.split(".")[0] in FRAMEWORK_PACKAGES:
                continue  # the framework's own no-op hook: nothing of the callback's runs there
            setattr(callback, name, self._timed(name, method))
        return callback

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        account = self

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            account.depth += 1
            c0, t0 = time.thread_time(), time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                cpu = time.thread_time() - c0
                account.depth -= 1
                if account.depth == 0:
                    account.hook_s += elapsed
                    account.hook_cpu_s += cpu
                    account.per_hook_s[name] += elapsed
                    account.per_hook_cpu_s[name] += cpu
                    account.calls += 1
                    account.per_hook_calls[name] += 1

        return timed


ACCOUNT = Accounting()


def _tracker_kwargs() -> dict[str, Any]:
    return dict(CODECARBON_KWARGS)


def _codecarbon_tracker() -> Any:
    import codecarbon

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return codecarbon.OfflineEmissionsTracker(**_tracker_kwargs())


# -- one training run per framework ----------------------------------------------------------------


def _torch_data() -> tuple[Any, Any, Any, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN, FEATURES, generator=g)
    y = x.sum(dim=1, keepdim=True) * 0.1
    xv = torch.randn(N_VAL, FEATURES, generator=g)
    yv = xv.sum(dim=1, keepdim=True) * 0.1
    return x, y, xv, yv


def _lightning_probe(pl: Any) -> Any:
    """A Lightning callback with the per-epoch hooks ours has, all empty: timed like the
    measured callbacks, it gives the stopwatch's own cost per call (epoch_cost_bench.py)."""

    class Probe(pl.Callback):
        """Empty hooks, timed like the callbacks': the stopwatch's own cost per call."""

        def on_train_batch_end(self, *args: Any) -> None:
            pass

        def on_train_epoch_start(self, *args: Any) -> None:
            pass

        def on_train_epoch_end(self, *args: Any) -> None:
            pass

        def on_validation_start(self, *args: Any) -> None:
            pass

        def on_validation_end(self, *args: Any) -> None:
            pass

    return Probe()


def _lightning_runner(
    package: str,
) -> tuple[Callable[[list[Any], int], tuple[float, float]], Callable[[str], Any]]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if package == "lightning":
        import lightning.pytorch as pl
    else:
        import pytorch_lightning as pl

    x, y, xv, yv = _torch_data()

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            xb, yb = batch
            return torch.nn.functional.mse_loss(self.net(xb), yb)

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            xb, yb = batch
            return torch.nn.functional.mse_loss(self.net(xb), yb)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class CodeCarbonEpochs(pl.Callback):
        """What a CodeCarbon user writes today: a task per epoch."""

        def __init__(self) -> None:
            self.tracker = _codecarbon_tracker()

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self.tracker.start()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.tracker.start_task(f"epoch {trainer.current_epoch}")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.tracker.stop_task()

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self.tracker.stop()

    def make_callback(variant: str) -> Any:
        if variant == "probe":
            return _lightning_probe(pl)
        if variant == "ours":
            module = __import__(f"codecarbon_callbacks.{package}", fromlist=["EmissionsCallback"])
            return module.EmissionsCallback(**_tracker_kwargs())
        return CodeCarbonEpochs()

    def run(callbacks: list[Any], epochs: int) -> tuple[float, float]:
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=callbacks,
        )
        train = DataLoader(TensorDataset(x, y), batch_size=BATCH)
        val = DataLoader(TensorDataset(xv, yv), batch_size=BATCH)
        model = Tiny()
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit(model, train, val)
        return time.perf_counter() - t0, time.process_time() - c0

    return run, make_callback  # type: ignore[return-value]


def _transformers_runner() -> tuple[
    Callable[[list[Any], int], tuple[float, float]], Callable[[str], Any]
]:
    import torch
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    transformers.logging.set_verbosity_error()
    x, y, xv, yv = _torch_data()

    class Rows(torch.utils.data.Dataset):
        def __init__(self, xs: Any, ys: Any) -> None:
            self.xs, self.ys = xs, ys

        def __len__(self) -> int:
            return len(self.xs)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"x": self.xs[i], "labels": self.ys[i]}

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
            )

        def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
            out = self.net(x)
            loss = torch.nn.functional.mse_loss(out, labels) if labels is not None else None
            return {"loss": loss, "logits": out}

    class CodeCarbonEpochs(TrainerCallback):
        """What a CodeCarbon user writes today: a task per epoch."""

        def __init__(self) -> None:
            self.tracker = _codecarbon_tracker()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.tracker.start()

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.tracker.start_task(f"epoch {int(state.epoch or 0)}")

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.tracker.stop_task()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.tracker.stop()

    out_dir = tempfile.mkdtemp(prefix="ccb-hf-")

    def make_callback(variant: str) -> Any:
        if variant == "ours":
            from codecarbon_callbacks.transformers import EmissionsCallback

            return EmissionsCallback(**_tracker_kwargs())
        return CodeCarbonEpochs()

    def run(callbacks: list[Any], epochs: int) -> tuple[float, float]:
        args = TrainingArguments(
            output_dir=out_dir,
            num_train_epochs=epochs,
            per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=BATCH,
            eval_strategy="epoch",
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            learning_rate=0.01,
        )
        trainer = Trainer(
            model=Tiny(),
            args=args,
            train_dataset=Rows(x, y),
            eval_dataset=Rows(xv, yv),
            callbacks=callbacks,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        return time.perf_counter() - t0, time.process_time() - c0

    return run, make_callback


def _keras_runner() -> tuple[Callable[[list[Any], int], tuple[float, float]], Callable[[str], Any]]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_TRAIN, FEATURES)).astype("float32")
    y = x.sum(axis=1, keepdims=True) * 0.1
    xv = rng.standard_normal((N_VAL, FEATURES)).astype("float32")
    yv = xv.sum(axis=1, keepdims=True) * 0.1

    class CodeCarbonEpochs(keras.callbacks.Callback):
        """What a CodeCarbon user writes today: a task per epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.tracker = _codecarbon_tracker()

        def on_train_begin(self, logs: Any = None) -> None:
            self.tracker.start()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.tracker.start_task(f"epoch {epoch}")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.tracker.stop_task()

        def on_train_end(self, logs: Any = None) -> None:
            self.tracker.stop()

    def make_callback(variant: str) -> Any:
        if variant == "ours":
            from codecarbon_callbacks.keras import EmissionsCallback

            return EmissionsCallback(**_tracker_kwargs())
        return CodeCarbonEpochs()

    def run(callbacks: list[Any], epochs: int) -> tuple[float, float]:
        model = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(1),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=BATCH,
            validation_data=(xv, yv),
            verbose=0,
            callbacks=callbacks,
        )
        return time.perf_counter() - t0, time.process_time() - c0

    return run, make_callback


def _runner(
    framework: str,
) -> tuple[Callable[[list[Any], int], tuple[float, float]], Callable[[str], Any]]:
    if framework in ("lightning", "pytorch_lightning"):
        return _lightning_runner(framework)
    if framework == "transformers":
        return _transformers_runner()
    if framework == "keras":
        return _keras_runner()
    raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")


def measure(framework: str, epochs: int, rounds: int) -> dict[str, Any]:
    """Alternate the three variants for ``rounds`` rounds (after a warm-up round)."""
    import torch

    torch.set_num_threads(1)  # one core trains, the other is left to the rest of the machine
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    logging.getLogger("codecarbon_callbacks").setLevel(logging.ERROR)
    ACCOUNT.install()
    run, make_callback = _runner(framework)
    variants = list(VARIANTS)
    unavailable: dict[str, str] = {}
    for variant in ("ours", "codecarbon"):
        try:
            make_callback(variant)
        except Exception as e:  # e.g. our adapter for this framework is not there yet
            unavailable[variant] = f"{type(e).__name__}: {e}"
            variants.remove(variant)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}

    def one(variant: str) -> dict[str, Any]:
        callbacks = [] if variant == "none" else [ACCOUNT.wrap_hooks(make_callback(variant))]
        ACCOUNT.reset()
        wall, cpu = run(callbacks, epochs)
        thread_cpu = ACCOUNT.finish_threads()
        startstop = sum(s for name, s in ACCOUNT.per_hook_s.items() if name in RUN_EDGE_HOOKS)
        return {
            "wall_s": wall,
            "process_cpu_s": cpu,
            "hook_s": ACCOUNT.hook_s,
            "run_edge_hooks_s": startstop,
            "thread_cpu_s": thread_cpu,
            "threads_started": len(ACCOUNT.owned),
            "own_percent": 100.0 * (ACCOUNT.hook_s + thread_cpu) / wall,
            "per_hook_s": dict(ACCOUNT.per_hook_s),
        }

    for variant in list(variants):  # warm-up: first-use imports and caches, not counted
        try:
            one(variant)
        except Exception as e:
            if variant == "none":
                raise
            unavailable[variant] = f"{type(e).__name__}: {e}"
            variants.remove(variant)
            del results[variant]
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for variant in order:
            results[variant].append(one(variant))
    return {
        "framework": framework,
        "epochs": epochs,
        "rounds": rounds,
        "results": results,
        "unavailable": unavailable,
    }


# -- orchestration --------------------------------------------------------------------------------


def rows_for(data: dict[str, Any]) -> list[Row]:
    framework, epochs, results = data["framework"], data["epochs"], data["results"]
    section = f"train:{framework}"
    rows: list[Row] = []
    fastest = {v: min(r["wall_s"] for r in runs) for v, runs in results.items() if runs}

    def own(variant: str) -> str:
        runs = results.get(variant)
        if not runs:
            return "n/a (" + data["unavailable"].get(variant, "not run")[:60] + ")"
        return fmt_pct(median([r["own_percent"] for r in runs]), 2)

    def ratio(variant: str) -> str:
        if variant not in fastest:
            return "n/a"
        return f"{fastest[variant] / fastest['none']:.3f}"

    least_cpu = {v: min(r["process_cpu_s"] for r in runs) for v, runs in results.items() if runs}

    def cpu_ratio(variant: str) -> str:
        if variant not in least_cpu:
            return "n/a"
        return f"{least_cpu[variant] / least_cpu['none']:.3f}"

    def per_epoch(variant: str) -> str:
        runs = results.get(variant)
        if not runs:
            return "n/a"
        return fmt_ms(median([(r["hook_s"] - r["run_edge_hooks_s"]) / epochs for r in runs]))

    def run_edges(variant: str) -> str:
        runs = results.get(variant)
        if not runs:
            return "n/a"
        return fmt_ms(median([r["run_edge_hooks_s"] for r in runs]))

    base = fmt_ms(fastest.get("none"))
    rows.append(
        Row(
            section,
            f"own cost ({epochs} epochs, % of wall)",
            own("ours"),
            own("codecarbon"),
            "",
            note=f"hooks + CPU of threads they start, median of {data['rounds']} rounds",
        )
    )
    rows.append(
        Row(
            section,
            "wall time / no callback (fastest of rounds)",
            ratio("ours"),
            ratio("codecarbon"),
            "",
            note=f"fastest run without a callback: {base}; +-3% is noise here",
        )
    )
    rows.append(
        Row(
            section,
            "process CPU time / no callback (least of rounds)",
            cpu_ratio("ours"),
            cpu_ratio("codecarbon"),
            "",
            note="CPU time of the whole process (every thread) around fit: "
            "less sensitive than wall time to other work on the machine",
        )
    )
    rows.append(
        Row(
            section,
            "hook time per epoch (excl. run start/end)",
            per_epoch("ours"),
            per_epoch("codecarbon"),
            "",
        )
    )
    rows.append(
        Row(section, "run start + end hooks", run_edges("ours"), run_edges("codecarbon"), "")
    )
    return rows


def collect(
    *, quick: bool = False, frameworks: tuple[str, ...] = DEFAULT_FRAMEWORKS
) -> tuple[list[Row], dict[str, Any]]:
    """Run each framework in its own fresh process; return table rows and the raw results."""
    rounds = 1 if quick else DEFAULT_ROUNDS

    def one(framework: str) -> dict[str, Any]:
        epochs = 5 if quick else DEFAULT_EPOCHS[framework]
        return run_script(
            "framework_bench.py",
            ["--framework", framework, "--epochs", str(epochs), "--rounds", str(rounds)],
            timeout_s=900,
        )

    outcomes: dict[str, Any] = {}
    if quick:  # figures of a quick pass mean nothing: run the frameworks side by side
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(frameworks) or 1) as pool:
            futures = {f: pool.submit(one, f) for f in frameworks}
        for framework, future in futures.items():
            try:
                outcomes[framework] = future.result()
            except Exception as e:
                outcomes[framework] = e
    else:  # one at a time: wall times are the point
        for framework in frameworks:
            try:
                outcomes[framework] = one(framework)
            except Exception as e:
                outcomes[framework] = e
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for framework in frameworks:
        data = outcomes[framework]
        if isinstance(data, Exception):
            e = data
            raw[framework] = {"error": str(e)}
            rows.append(
                Row(
                    f"train:{framework}",
                    "overhead",
                    "failed",
                    "failed",
                    "",
                    note=str(e).strip().splitlines()[-1][:160] if str(e).strip() else "failed",
                )
            )
            continue
        raw[framework] = data
        rows.extend(rows_for(data))
    return rows, raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    emit(measure(args.framework, args.epochs, args.rounds))


if __name__ == "__main__":
    main()
