"""A plain torch.distributed loop over the session (gloo, CPU), launched with torchrun.

Usage: torchrun --nproc_per_node 2 session_sigterm.py OUT_DIR

Rank 1 dies after epoch 0; rank 0 is busy in Python (not in a collective), so torchrun's SIGTERM
reaches it there: its record must still be written.
"""

import faulthandler
import signal
import sys
import time

import torch.distributed as dist

from codecarbon_callbacks.session import EmissionsSession

if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # a hung launch: the test dumps every rank's stacks
    dist.init_process_group("gloo")
    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir=sys.argv[1], allow_multiple_runs=True
    )
    session.begin_run("fit", rank=dist.get_rank())
    session.begin_epoch(0)
    time.sleep(0.3)
    session.end_epoch(0)
    session.begin_epoch(1)
    if dist.get_rank() == 1:
        raise RuntimeError("training died on rank 1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # "training" that never reaches a collective
        sum(range(10_000))
