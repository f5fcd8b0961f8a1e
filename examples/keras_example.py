"""Keras 3: per-epoch energy and emissions with one callback.

A tiny dense classifier built in code, trained on synthetic data on the CPU with a validation
split. The callback adds ``epoch_energy_kwh``, ``epoch_emissions_kg``... to each epoch's logs,
so ``History.history`` (and the progress bar) shows them.

Keras runs here on the torch backend (``KERAS_BACKEND=torch`` unless you set another one).

Run:
    python examples/keras_example.py --epochs 3 --output-dir example_output
"""

from __future__ import annotations

import os

from _common import parse_args, print_report

os.environ.setdefault("KERAS_BACKEND", "torch")  # must be set before keras is imported


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    import keras
    import numpy as np

    from codecarbon_callbacks.keras import EmissionsCallback

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(16384, 32)).astype("float32")
    y = x[:, :4].argmax(axis=1)
    model = keras.Sequential(
        [
            keras.Input(shape=(32,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    emissions = EmissionsCallback(
        project_name="keras-example",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        task_family="classification",
    )
    history = model.fit(
        x,
        y,
        epochs=args.epochs,
        batch_size=128,
        validation_split=0.2,
        callbacks=[emissions],
        verbose=2,
    )

    print(
        "\nhistory.history['epoch_energy_kwh']:",
        [f"{v:.3e}" for v in history.history.get("epoch_energy_kwh", [])],
    )
    summary = emissions.summary()
    print(
        f"Run {summary['run_id']}: {summary['totals']['energy_kwh'] * 1000:.4g} Wh, "
        f"{summary['totals']['emissions_kg'] * 1000:.4g} g CO2eq"
    )
    print_report(args.output_dir, summary["run_id"])


if __name__ == "__main__":
    main()
