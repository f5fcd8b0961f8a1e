"""Migrating from CodeCarbon: change the import, keep your code.

Everything below is CodeCarbon 3.3 code: ``OfflineEmissionsTracker`` as a context manager,
``start()``/``stop()``, tasks, the ``@track_emissions`` decorator, ``output_methods``. Only the
import differs. The ``emissions.csv`` it writes starts with CodeCarbon's columns in CodeCarbon's
order (then ours: status, measurement methods, carbon intensity and source, metadata), and an
existing CodeCarbon ``emissions.csv`` is appended to in its own columns.

What you gain without changing more: per-epoch windows (``emissions_windows.csv``, and the
framework callbacks), how each component was measured, and no lost records.

Run:
    python examples/migrate_from_codecarbon.py --epochs 2
"""

from __future__ import annotations

import csv
from pathlib import Path

from _common import parse_args, print_report

# Before:  from codecarbon import OfflineEmissionsTracker, track_emissions
from codecarbon_callbacks import OfflineEmissionsTracker, OutputMethod, track_emissions


def train_one_epoch(model, loader, optimizer) -> float:
    import torch

    for features, labels in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        optimizer.step()
    return loss.item()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], epochs=2)

    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 4))
    x = torch.randn(8192, 32)
    y = x[:, :4].argmax(dim=1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    # 1. CodeCarbon's tracker with tasks: one task per epoch (CodeCarbon's way to split a run).
    tracker = OfflineEmissionsTracker(
        project_name="migrate-from-codecarbon",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        output_methods=[OutputMethod.CSV],
        measure_power_secs=15,
        log_level="warning",
    )
    tracker.start()
    try:
        for epoch in range(args.epochs):
            tracker.start_task(f"epoch {epoch}")
            loss = train_one_epoch(model, loader, optimizer)
            task = tracker.stop_task()
            print(
                f"task {task.name!r}: loss {loss:.3f}, {task.energy_consumed:.3e} kWh, "
                f"{task.emissions:.3e} kg CO2eq"
            )
    finally:
        emissions_kg = tracker.stop()
    print(
        f"tracker.stop() returned {emissions_kg:.3e} kg CO2eq; "
        "tracker.final_emissions_data.energy_consumed = "
        f"{tracker.final_emissions_data.energy_consumed:.3e} kWh"
    )
    first_run = tracker.run_id

    # 2. The context manager.
    with OfflineEmissionsTracker(
        project_name="migrate-from-codecarbon",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        log_level="warning",
    ) as context_tracker:
        train_one_epoch(model, loader, optimizer)
    print(f"context manager: {context_tracker.final_emissions:.3e} kg CO2eq")

    # 3. The decorator (offline=True selects OfflineEmissionsTracker, as in CodeCarbon).
    @track_emissions(
        offline=True,
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        project_name="migrate-from-codecarbon",
        log_level="warning",
    )
    def evaluate() -> float:
        with torch.no_grad():
            return float((model(x).argmax(dim=1) == y).float().mean())

    print(f"@track_emissions: accuracy {evaluate():.2f}")

    # The file: CodeCarbon's columns first, in CodeCarbon's order.
    with open(Path(args.output_dir) / "emissions.csv", newline="") as f:
        header = next(csv.reader(f))
    print(
        f"\nemissions.csv: {len(header)} columns, starting {', '.join(header[:6])}, ...; ours: "
        f"{', '.join(header[header.index('pue') + 2 :])}"
    )
    print_report(args.output_dir, first_run)


if __name__ == "__main__":
    main()
