"""Which pip extra installs which framework, and the error an adapter raises without it.

An adapter imports its framework lazily; when that fails, :func:`missing_framework_error` builds
the ImportError that names the real cause (the framework, a piece it needs, or for keras its
backend) and the install command with its extra quoted.
"""

from __future__ import annotations

import os

#: framework module -> extra of this distribution that installs it
FRAMEWORK_EXTRAS: dict[str, str] = {
    "lightning": "lightning",
    "pytorch_lightning": "pytorch-lightning",
    "transformers": "transformers",
    "keras": "keras",
    "accelerate": "transformers",  # the Hugging Face Trainer runs on it
}

#: what needs a module that is not a framework itself (named in the error)
_NEEDED_BY: dict[str, str] = {"accelerate": "the Hugging Face Trainer"}


def install_hint(extra: str) -> str:
    """How to install this distribution with an extra, from a release and from a clone.

    Args:
        extra: the extra's name, e.g. ``"keras"``.

    Returns:
        ``pip install "codecarbon-callbacks[keras]"``, and for a clone, run from its root,
        ``pip install -e ./core -e ".[keras]"`` (the extra quoted, so that zsh does not expand
        the brackets).
    """
    return (
        f'pip install "codecarbon-callbacks[{extra}]" '
        f'(from a clone, at its root: pip install -e ./core -e ".[{extra}]")'
    )


#: the modules Keras 3 backends import (the numpy backend imports jax)
_KERAS_BACKEND_MODULES = frozenset({"tensorflow", "jax", "torch", "openvino"})


def _keras_backend_cause(error: BaseException) -> str | None:
    """Why keras, installed, could not be imported when its backend is the cause, else None.

    Keras 3 imports its backend when it is imported: the one ``KERAS_BACKEND`` names, else the one
    in ``~/.keras/keras.json``, else tensorflow. A backend that is not installed (or a name that
    is not a backend) fails ``import keras`` although keras is installed.
    """
    import importlib.util

    missing = str(getattr(error, "name", None) or "").split(".")[0]
    # a backend module that is not installed, or a KERAS_BACKEND that names no backend
    if missing not in _KERAS_BACKEND_MODULES and not isinstance(error, ValueError):
        return None
    try:
        if importlib.util.find_spec("keras") is None:
            return None
    except (ImportError, ValueError):
        return None
    backend = os.environ.get("KERAS_BACKEND", "").strip()
    which = (
        f"KERAS_BACKEND={backend!r}"
        if backend
        else "KERAS_BACKEND is not set, so keras uses the backend of ~/.keras/keras.json, "
        "by default tensorflow"
    )
    return (
        f"keras is installed, but its backend could not be imported ({which}: "
        f"{type(error).__name__}: {error}). Keras 3 needs a backend: install torch, jax or "
        "tensorflow and name it in KERAS_BACKEND before keras is imported, e.g. "
        "pip install torch and KERAS_BACKEND=torch."
    )


def missing_framework_error(
    module: str, adapter: str, error: BaseException | None = None
) -> ImportError:
    """The ImportError an adapter raises when its framework cannot be imported.

    The message names the real cause: the framework itself or a piece it needs (``accelerate``
    for the Hugging Face Trainer) missing, with the install command (its extra quoted), or, for
    keras, a backend that could not be imported (``KERAS_BACKEND``).

    Args:
        module: the framework's import name, e.g. ``"lightning"``.
        adapter: the adapter module, e.g. ``"codecarbon_callbacks.lightning"``.
        error: the original import error, for the message.
    """
    extra = FRAMEWORK_EXTRAS.get(module, module)
    if module == "keras" and error is not None:
        cause = _keras_backend_cause(error)
        if cause is not None:
            return ImportError(f"{adapter}: {cause}")
    why = f" ({error})" if error is not None else ""
    needed_by = f" ({_NEEDED_BY[module]} needs it)" if module in _NEEDED_BY else ""
    return ImportError(
        f"{adapter} needs the {module!r} package{needed_by}, which could not be imported{why}. "
        f"Install it with: {install_hint(extra)}"
    )


__all__ = ["FRAMEWORK_EXTRAS", "install_hint", "missing_framework_error"]
