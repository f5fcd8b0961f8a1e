"""A tiny Lightning fit on CPU for the distributed tests (run as a subprocess, never imported).

Usage: python lightning_fit.py OUT_DIR STRATEGY [--devices N] [--num-nodes N] [--bind-gpus UUID,...]
                               [--epochs N] [--max-energy-kwh X] [--fail-at-epoch N] [--boamps]

``--bind-gpus`` plays the launcher that gives each task its own GPU (SLURM's --gpus-per-task):
each rank's CUDA_VISIBLE_DEVICES becomes the UUID of its local rank, before the callback's
on_fit_start. ``--fail-at-epoch`` raises in training_step on rank 0 in that epoch.
"""

import argparse
import faulthandler
import os
import signal
import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from codecarbon_callbacks import BoAmpsOutput
from codecarbon_callbacks.lightning import EmissionsCallback


class Tiny(pl.LightningModule):
    def __init__(self, fail_at_epoch: int = -1) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        self.fail_at_epoch = fail_at_epoch

    def training_step(self, batch, batch_idx):
        if self.current_epoch == self.fail_at_epoch and self.global_rank == 0:
            raise RuntimeError("training died on rank 0")
        time.sleep(0.1)  # long enough epochs for the GPUs' 100-ms energy counters
        return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log(
            "val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]), sync_dist=True
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DestroyGroup(pl.Callback):
    """Ends the process group on every rank when fit is over, as torch asks.

    Lightning does it at exit for NCCL only; with gloo, an exit without it sometimes aborts a
    rank ("terminate called without an active exception", pytorch/pytorch#190489).
    """

    def teardown(self, trainer, pl_module, stage):
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class BindGpu(pl.Callback):
    """The launcher's job on a GPU cluster: one GPU per task, by UUID."""

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = uuids

    def setup(self, trainer, pl_module, stage):
        os.environ["CUDA_VISIBLE_DEVICES"] = self.uuids[trainer.local_rank]


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # a hung launch: the test dumps every rank's stacks
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("strategy")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--bind-gpus", default="")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-energy-kwh", type=float, default=None)
    parser.add_argument("--fail-at-epoch", type=int, default=-1)
    parser.add_argument("--boamps", action="store_true", help="also write the BoAmps report")
    parser.add_argument("--no-emissions", action="store_true", help="without the callback")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    callbacks = [DestroyGroup()]
    callbacks += [BindGpu(args.bind_gpus.split(","))] if args.bind_gpus else []
    callbacks += (
        []
        if args.no_emissions
        else [
            EmissionsCallback(
                country_iso_code="FRA",
                output_dir=args.out,
                measure_power_secs=0.1,
                allow_multiple_runs=True,
                max_energy_kwh=args.max_energy_kwh,
                task_family="regression",
                output_handlers=[BoAmpsOutput(args.out)] if args.boamps else [],
            )
        ]
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=1,
    )
    trainer.fit(
        Tiny(args.fail_at_epoch),
        DataLoader(data, batch_size=8),
        DataLoader(data, batch_size=32),
    )
    if torch.distributed.is_initialized():
        # gloo's threads, left to static destruction, sometimes abort the exit
        # ("terminate called without an active exception")
        torch.distributed.destroy_process_group()
