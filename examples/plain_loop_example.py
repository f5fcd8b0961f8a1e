"""A plain PyTorch training loop, measured per epoch with the tracker's windows.

No framework: the tracker measures the whole run, and ``switch_window`` cuts it into an
``epoch`` (training) window and a ``validation`` window per epoch, at one meter read each, so
the windows tile the run exactly and their energies add up to the run's.

Run:
    python examples/plain_loop_example.py --epochs 3 --output-dir example_output
"""

from __future__ import annotations

import time

from _common import parse_args, print_report

from codecarbon_callbacks import OfflineEmissionsTracker


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    # A tiny model built from a config, and synthetic data: nothing is downloaded.
    config = {"n_features": 32, "hidden": 256, "n_classes": 4, "samples": 20480, "batch_size": 128}
    model = nn.Sequential(
        nn.Linear(config["n_features"], config["hidden"]),
        nn.ReLU(),
        nn.Linear(config["hidden"], config["n_classes"]),
    )
    x = torch.randn(config["samples"], config["n_features"])
    y = (x[:, :4].argmax(dim=1)).long()
    train = torch.utils.data.TensorDataset(x[:16384], y[:16384])
    val = torch.utils.data.TensorDataset(x[16384:], y[16384:])
    train_loader = torch.utils.data.DataLoader(train, batch_size=config["batch_size"], shuffle=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=config["batch_size"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()

    tracker = OfflineEmissionsTracker(
        project_name="plain-loop-example",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        metadata={"framework": "torch", "example": "plain_loop_example.py"},
    )
    tracker.start()
    status = "failed"
    try:
        window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
        for epoch in range(args.epochs):
            started = time.perf_counter()
            model.train()
            for features, labels in train_loader:
                optimizer.zero_grad()
                loss = loss_fn(model(features), labels)
                loss.backward()
                optimizer.step()
            # training done: close the epoch's train window, open its validation window
            train_record, window = tracker.switch_window(
                window, "phase", f"validation {epoch}", epoch=epoch, phase="validation"
            )
            model.eval()
            correct = 0
            with torch.no_grad():
                for features, labels in val_loader:
                    correct += int((model(features).argmax(dim=1) == labels).sum())
            accuracy = correct / len(val)
            # validation done: close it, open the next epoch's train window (or a closing window)
            last = epoch == args.epochs - 1
            val_record, window = tracker.switch_window(
                window,
                "phase" if last else "epoch",
                "after training" if last else f"epoch {epoch + 1}",
                epoch=None if last else epoch + 1,
                phase="other" if last else "train",
            )
            print(
                f"epoch {epoch}: loss {loss.item():.3f}, val accuracy {accuracy:.2f}, "
                f"{time.perf_counter() - started:.2f} s, train "
                f"{train_record.energy_consumed * 1000:.4g} Wh + validation "
                f"{val_record.energy_consumed * 1000:.4g} Wh"
            )
        tracker.close_window(window)
        status = "completed"
    finally:
        emissions_kg = tracker.stop(status=status)
    print(f"\nRun {tracker.run_id}: {emissions_kg * 1000:.4g} g CO2eq in total")
    print_report(args.output_dir, tracker.run_id)


if __name__ == "__main__":
    main()
