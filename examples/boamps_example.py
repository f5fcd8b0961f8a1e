"""BoAmps: a standard energy report of a training run, enriched from a context file.

What the tracker measures (energy per component, duration, hardware, location, carbon
intensity) fills the BoAmps report; what only you know (the task, the algorithm, the dataset,
the publisher, the licence) comes from a JSON context file: a partial BoAmps report,
``examples/boamps_context.json``. The report, ``boamps_report_<run_id>.json``, follows the
BoAmps 1.1 schema (https://github.com/Boavizta/BoAmps).

Run:
    python examples/boamps_example.py --epochs 3
    python examples/boamps_example.py --context my_context.json
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import parse_args, print_report
from codecarbon_callbacks_core.output.boamps import validate_report

from codecarbon_callbacks import BoAmpsOutput, OfflineEmissionsTracker

HERE = Path(__file__).resolve().parent


def _options(parser) -> None:
    parser.add_argument(
        "--context",
        default=str(HERE / "boamps_context.json"),
        help="the BoAmps context file (default: examples/boamps_context.json)",
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=_options)

    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 4))
    x = torch.randn(16384, 32)
    y = x[:, :4].argmax(dim=1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    boamps = BoAmpsOutput.from_file(args.context, output_dir=args.output_dir)
    tracker = OfflineEmissionsTracker(
        project_name="boamps-example",
        country_iso_code=args.country_iso_code,
        output_dir=args.output_dir,
        output_handlers=[boamps],  # CSV (the default output method) + BoAmps
        # the same from configuration alone: output_methods=["csv", "boamps"],
        # boamps_context_file=args.context (or CODECARBON_BOAMPS_CONTEXT_FILE)
        metadata={"framework": "torch", "example": "boamps_example.py"},
    )
    # Facts measured during the run can be added to the task too: here the parameter count
    # (in billions, as BoAmps wants it) and the number of epochs.
    n_parameters = sum(p.numel() for p in model.parameters())
    tracker.update_metadata(
        {
            "boamps_task": {
                "algorithms": [
                    {
                        "parametersNumber": n_parameters / 1e9,
                        "epochsNumber": args.epochs,
                        "layersNumber": 2,
                    }
                ]
            }
        }
    )
    with tracker:
        for epoch in range(args.epochs):
            window = tracker.open_window("epoch", f"epoch {epoch}", epoch=epoch, phase="train")
            for features, labels in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(features), labels)
                loss.backward()
                optimizer.step()
            record = tracker.close_window(window)
            print(f"epoch {epoch}: loss {loss.item():.3f}, {record.energy_consumed * 1000:.4g} Wh")

    path = boamps.save_file_path
    if path is None:
        raise SystemExit("the BoAmps report was not written (see the warnings above)")
    report = json.loads(Path(path).read_text())
    problems = validate_report(report)
    print(f"\nBoAmps report: {Path(path).resolve()}")
    print(
        f"  task: {report['task']['taskStage']} / {report['task']['taskFamily']}, "
        f"algorithm {report['task']['algorithms'][0].get('algorithmName')}, "
        f"{report['task']['algorithms'][0].get('parametersNumber')} billion parameters"
    )
    for measure in report.get("measures", []):
        print(
            f"  measure: {measure.get('measurementMethod')}, {measure.get('powerConsumption')} kWh "
            f"over {measure.get('measurementDuration')} s"
        )
    print(
        f"  environment: {report.get('environment', {}).get('country')}, "
        f"{report.get('environment', {}).get('powerSourceCarbonIntensity')} gCO2eq/kWh"
    )
    print(
        "  validates against the BoAmps 1.1 required fields: "
        + ("yes" if not problems else "no: " + "; ".join(problems))
    )
    print_report(args.output_dir, tracker.run_id)


if __name__ == "__main__":
    main()
