"""Prometheus: the run's energy and emissions pushed to a Pushgateway while training runs.

With ``--prometheus-url`` the example pushes to your Pushgateway. Without it, it starts a
throw-away ``prometheus-pushgateway`` on a free loopback port (Debian/Ubuntu: ``apt install
prometheus-pushgateway``), pushes to it, and prints what the gateway holds at the end.

Prometheus then scrapes the Pushgateway: CodeCarbon's series (``codecarbon_energy_total`` in
kWh, ``codecarbon_cpu_power``, ...) and ours in base units (``codecarbon_energy_joules_total``,
``codecarbon_cpu_power_watts``, ...), each per ``run_id``.

Run:
    python examples/prometheus_example.py --epochs 3
    python examples/prometheus_example.py --prometheus-url localhost:9091
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

from _common import parse_args, print_report

from codecarbon_callbacks import OfflineEmissionsTracker, OutputMethod


def _options(parser) -> None:
    parser.add_argument(
        "--prometheus-url",
        default=None,
        help="your Pushgateway (host:port); default: start a local one",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_pushgateway() -> tuple[subprocess.Popen, str] | None:
    """A throw-away Pushgateway on loopback, or None when the binary is not installed."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        return None
    port = _free_port()
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.terminate()
    return None


def train(epochs: int, tracker) -> None:
    """A plain PyTorch loop; one epoch window per epoch."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 4))
    x = torch.randn(16384, 32)
    y = x[:, :4].argmax(dim=1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(epochs):
        window = tracker.open_window("epoch", f"epoch {epoch}", epoch=epoch, phase="train")
        for features, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(features), labels)
            loss.backward()
            optimizer.step()
        record = tracker.close_window(window)
        print(f"epoch {epoch}: loss {loss.item():.3f}, {record.energy_consumed * 1000:.4g} Wh")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=_options)
    import torch

    torch.manual_seed(args.seed)
    gateway = None
    url = args.prometheus_url
    if url is None:
        gateway = start_local_pushgateway()
        if gateway is None:
            url = "localhost:9091"
            print(
                "prometheus-pushgateway is not installed: pushing to localhost:9091 "
                "(a failed push only logs a warning; training goes on)"
            )
        else:
            url = gateway[1]
            print(f"Started a local Pushgateway at http://{url}")
    try:
        tracker = OfflineEmissionsTracker(
            project_name="prometheus-example",
            country_iso_code=args.country_iso_code,
            output_dir=args.output_dir,
            output_methods=[OutputMethod.CSV, OutputMethod.PROMETHEUS],
            prometheus_url=url,
            measure_power_secs=0.5,  # live totals every 0.5 s x api_call_interval
            api_call_interval=1,
            metadata={"framework": "torch", "example": "prometheus_example.py"},
        )
        with tracker:
            train(args.epochs, tracker)
        if gateway is not None:
            with urllib.request.urlopen(f"http://{url}/api/v1/metrics", timeout=5) as response:
                groups = json.loads(response.read())["data"]
            for group in groups:
                labels = group.get("labels", {})
                if labels.get("run_id") != tracker.run_id:
                    continue
                print(
                    f"\nThe Pushgateway holds, for job={labels.get('job')} "
                    f"run_id={labels.get('run_id')}:"
                )
                for name in sorted(group):
                    if name.startswith("codecarbon_"):
                        for metric in group[name]["metrics"]:
                            component = metric["labels"].get("component")
                            label = f'{{component="{component}"}}' if component else ""
                            print(f"  {name}{label} = {metric['value']}")
    finally:
        if gateway is not None:
            gateway[0].terminate()
            gateway[0].wait(5)
    print_report(args.output_dir, tracker.run_id)


if __name__ == "__main__":
    main()
