"""The job a run belongs to: SLURM, Kubernetes and torchrun identities, read once per run.

Each record's metadata carries them under ``"job"`` (only the keys found), and Prometheus'
``codecarbon_run_info`` carries them as labels (empty where absent), so that a run's energy can be
joined to the scheduler's own accounting.

======================== ===================================================================
key                      source
======================== ===================================================================
``slurm_job_id``         ``SLURM_JOB_ID`` (else the older ``SLURM_JOBID``)
``slurm_array_job_id``   ``SLURM_ARRAY_JOB_ID``
``slurm_array_task_id``  ``SLURM_ARRAY_TASK_ID``
``slurm_step_id``        ``SLURM_STEP_ID`` (else ``SLURM_STEPID``)
``slurm_job_nodelist``   ``SLURM_JOB_NODELIST`` (else ``SLURM_NODELIST``), compressed as SLURM
                         writes it (``node[01-04]``)
``k8s_pod``              ``POD_NAME`` (the downward API, by convention), else ``HOSTNAME``
                         (a pod's host name is its name), only inside Kubernetes
``k8s_namespace``        ``POD_NAMESPACE``, else the service account's ``namespace`` file
                         (``/var/run/secrets/kubernetes.io/serviceaccount/namespace``), only
                         inside Kubernetes
``torchelastic_run_id``  ``TORCHELASTIC_RUN_ID`` (set by ``torchrun``)
======================== ===================================================================

"Inside Kubernetes" means ``KUBERNETES_SERVICE_HOST`` is set (the kubelet sets it in every pod).
Only identifiers are read: never the service account's token or any other secret. A value is
stripped of control characters and cut to :data:`MAX_VALUE_CHARS`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["JOB_KEYS", "MAX_VALUE_CHARS", "job_identity"]

#: every key :func:`job_identity` may return, in a fixed order (the Prometheus label names)
JOB_KEYS: tuple[str, ...] = (
    "slurm_job_id",
    "slurm_array_job_id",
    "slurm_array_task_id",
    "slurm_step_id",
    "slurm_job_nodelist",
    "k8s_pod",
    "k8s_namespace",
    "torchelastic_run_id",
)
#: the longest value kept (a node list of a large job can be long)
MAX_VALUE_CHARS = 256

#: environment variables read per key, first one set wins
_ENV_SOURCES: dict[str, tuple[str, ...]] = {
    "slurm_job_id": ("SLURM_JOB_ID", "SLURM_JOBID"),
    "slurm_array_job_id": ("SLURM_ARRAY_JOB_ID",),
    "slurm_array_task_id": ("SLURM_ARRAY_TASK_ID",),
    "slurm_step_id": ("SLURM_STEP_ID", "SLURM_STEPID"),
    "slurm_job_nodelist": ("SLURM_JOB_NODELIST", "SLURM_NODELIST"),
    "torchelastic_run_id": ("TORCHELASTIC_RUN_ID",),
}
_K8S_NAMESPACE_FILE = "var/run/secrets/kubernetes.io/serviceaccount/namespace"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str | None) -> str:
    if not value:
        return ""
    return _CONTROL.sub("", value).strip()[:MAX_VALUE_CHARS]


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        value = _clean(environ.get(name))
        if value:
            return value
    return ""


def _read_namespace(root: Path) -> str:
    try:
        with open(root / _K8S_NAMESPACE_FILE, encoding="utf-8", errors="replace") as f:
            return _clean(f.read(MAX_VALUE_CHARS + 1))
    except OSError:
        return ""


def job_identity(
    environ: Mapping[str, str] | None = None, *, root: str | os.PathLike[str] = "/"
) -> dict[str, str]:
    """The identities of the job this process runs in (see the module's table).

    Args:
        environ: the environment to read (default ``os.environ``).
        root: the file system root under which the Kubernetes namespace file is looked for
            (tests point it at a fake tree).

    Returns:
        ``{key: value}`` for the keys of :data:`JOB_KEYS` that were found, in that order; empty
        outside any scheduler. Never raises: an unreadable file is a missing value.

    Example:
        >>> job_identity({"SLURM_JOB_ID": "42", "SLURM_ARRAY_TASK_ID": "3"})
        {'slurm_job_id': '42', 'slurm_array_task_id': '3'}
    """
    env = os.environ if environ is None else environ
    found = {key: _first(env, names) for key, names in _ENV_SOURCES.items()}
    if _clean(env.get("KUBERNETES_SERVICE_HOST")):
        found["k8s_pod"] = _first(env, ("POD_NAME", "HOSTNAME"))
        found["k8s_namespace"] = _first(env, ("POD_NAMESPACE",)) or _read_namespace(Path(root))
    return {key: found[key] for key in JOB_KEYS if found.get(key)}
