"""A tiny Hugging Face Trainer fit on CPU for the distributed tests, launched with torchrun.

Usage: torchrun --nproc_per_node 2 hf_trainer_fit.py OUT_DIR [--epochs N] [--fail RANK:STEP]

``--fail RANK:STEP`` raises in that rank's forward pass at that (0-based) training step.
"""

import argparse
import faulthandler
import signal
import time

import torch
from transformers import Trainer, TrainingArguments

from codecarbon_callbacks.transformers import EmissionsCallback


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=generator)
        self.y = torch.randn(n, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


class Regressor(torch.nn.Module):
    def __init__(self, fail_rank: int = -1, fail_step: int = -1) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        self.fail_rank, self.fail_step, self.steps = fail_rank, fail_step, 0

    def forward(self, x, labels=None):
        if self.training:
            if self.steps == self.fail_step and torch.distributed.get_rank() == self.fail_rank:
                raise RuntimeError(f"training died on rank {self.fail_rank}")
            self.steps += 1
            time.sleep(0.1)  # long enough epochs for the GPUs' 100-ms energy counters
        prediction = self.net(x)
        loss = torch.nn.functional.mse_loss(prediction, labels)
        return {"loss": loss, "logits": prediction}


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # a hung launch: the test dumps every rank's stacks
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fail", default="-1:-1")
    args = parser.parse_args()
    torch.manual_seed(0)
    training = TrainingArguments(
        output_dir=f"{args.out}/trainer",
        num_train_epochs=args.epochs,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    callback = EmissionsCallback(
        country_iso_code="FRA",
        output_dir=args.out,
        measure_power_secs=0.1,
        allow_multiple_runs=True,
    )
    trainer = Trainer(
        model=Regressor(*map(int, args.fail.split(":"))),
        args=training,
        train_dataset=Pairs(64),
        eval_dataset=Pairs(32),
        callbacks=[callback],
    )
    trainer.train()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # gloo's threads must not outlive the group
