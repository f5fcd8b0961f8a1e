"""PyTorch Lightning: per-epoch energy and emissions with one callback.

A tiny classifier built from a config, trained on synthetic data on the CPU. The callback
measures every epoch's training and validation, logs ``epoch_energy_kwh`` & co. to Lightning's
loggers (here a CSVLogger), and writes ``emissions.csv`` and ``emissions_windows.csv``.

Run:
    python examples/lightning_example.py --epochs 3 --output-dir example_output
"""

from __future__ import annotations

from _common import parse_args, print_report


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn

    from codecarbon_callbacks.lightning import EmissionsCallback

    pl.seed_everything(args.seed, verbose=False)
    config = {"n_features": 32, "hidden": 256, "n_classes": 4, "samples": 20480, "batch_size": 128}

    class Classifier(pl.LightningModule):
        def __init__(self, n_features: int, hidden: int, n_classes: int) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
            )
            self.loss = nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_accuracy", (self.net(x).argmax(dim=1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    x = torch.randn(config["samples"], config["n_features"])
    y = x[:, :4].argmax(dim=1)
    split = int(0.8 * config["samples"])
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:split], y[:split]),
        batch_size=config["batch_size"],
        shuffle=True,
    )
    val_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[split:], y[split:]), batch_size=config["batch_size"]
    )

    emissions = EmissionsCallback(
        project_name="lightning-example",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        task_family="classification",
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        callbacks=[emissions],
        logger=CSVLogger(args.output_dir, name="lightning_logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(
        Classifier(config["n_features"], config["hidden"], config["n_classes"]),
        train_loader,
        val_loader,
    )

    summary = emissions.summary()
    print(
        f"\nRun {summary['run_id']}: {summary['totals']['energy_kwh'] * 1000:.4g} Wh, "
        f"{summary['totals']['emissions_kg'] * 1000:.4g} g CO2eq"
    )
    print(
        "Lightning's own metrics (with epoch_energy_kwh, epoch_emissions_kg...): "
        f"{trainer.logger.log_dir}/metrics.csv"
    )
    print_report(args.output_dir, summary["run_id"])


if __name__ == "__main__":
    main()
