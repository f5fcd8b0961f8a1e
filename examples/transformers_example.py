"""Hugging Face Trainer: per-epoch energy and emissions with one callback.

A tiny BERT classifier built from a config (no download), trained on synthetic token ids on the
CPU, evaluated every epoch. ``callback.attach(trainer)`` puts the callback first, so its figures
(``epoch_energy_kwh``, ``epoch_emissions_kg``...) are in ``trainer.state.log_history`` and reach
every ``report_to`` integration.

Run:
    python examples/transformers_example.py --epochs 3 --output-dir example_output
"""

from __future__ import annotations

import os

from _common import parse_args, print_report

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model comes from a config


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from codecarbon_callbacks.transformers import EmissionsCallback

    hf_logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)

    class SyntheticTokens(torch.utils.data.Dataset):
        """Random token ids; the label says whether token 1 appears more than token 2."""

        def __init__(self, n: int, length: int = 32, seed: int = 0) -> None:
            generator = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(3, 10, (n, length), generator=generator)
            self.labels = ((self.ids == 3).sum(dim=1) > (self.ids == 4).sum(dim=1)).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {
                "input_ids": self.ids[i],
                "attention_mask": torch.ones_like(self.ids[i]),
                "labels": self.labels[i],
            }

    training_args = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "hf_trainer"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=SyntheticTokens(1024, seed=args.seed),
        eval_dataset=SyntheticTokens(256, seed=args.seed + 1),
    )
    emissions = EmissionsCallback(
        project_name="transformers-example",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        task_family="text classification",
    ).attach(trainer)
    trainer.train()

    print("\nWhat the Trainer logged (trainer.state.log_history), per epoch:")
    for entry in trainer.state.log_history:
        if "epoch_energy_kwh" in entry:
            print(
                f"  after epoch {entry.get('epoch'):g}: "
                f"epoch_energy_kwh={entry['epoch_energy_kwh']:.3e}, "
                f"epoch_emissions_kg={entry.get('epoch_emissions_kg', float('nan')):.3e}"
            )
    summary = emissions.summary()
    print(
        f"\nRun {summary['run_id']}: {summary['totals']['energy_kwh'] * 1000:.4g} Wh, "
        f"{summary['totals']['emissions_kg'] * 1000:.4g} g CO2eq"
    )
    print_report(args.output_dir, summary["run_id"])


if __name__ == "__main__":
    main()
