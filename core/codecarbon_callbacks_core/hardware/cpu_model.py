"""CPU model names: read them, normalise them, and look up their TDP in the bundled table.

The table ``core/data/cpu_tdp.csv`` (columns ``model,tdp_w``) is built by
``scripts/build_cpu_tdp.py`` from CodeCarbon's ``cpu_power.csv`` (MIT); see ``cpu_tdp.md`` beside
it. Its ``model`` column is already normalised with :func:`normalize_cpu_model`, so a lookup
normalises the query the same way, tries an exact match, then the best token match.

Matching is fast: the table is loaded once, lazily (about 5 ms); an exact lookup then takes
microseconds and a token match about a millisecond.

Example:
    >>> normalize_cpu_model("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    'intel xeon gold 6248'
    >>> lookup_tdp_w("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    ('intel xeon gold 6248', 150.0)
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

_TRADEMARKS = re.compile(r"\((?:r|tm|c)\)|®|™", re.IGNORECASE)
_FREQUENCY = re.compile(r"@?\s*\d+(?:\.\d+)?\s*[gm]hz\b", re.IGNORECASE)
_CORE_COUNT = re.compile(r"\b\d+-core\b|\b(?:single|dual|quad|six|eight|twelve|sixteen)-core\b")
_NOISE_WORDS = frozenset({"cpu", "processor", "apu", "with", "radeon", "graphics"})
_SPLIT = re.compile(r"[\s,/]+")


def normalize_cpu_model(name: str) -> str:
    """Normalise a CPU model name for matching.

    Lower case; drops ``(R)``, ``(TM)``, the frequency (``@ 2.50GHz``), core counts
    (``64-Core``), and the words CPU, Processor, APU, "with Radeon Graphics"; collapses spaces.

    Args:
        name: a model name as /proc/cpuinfo, ``platform.processor()`` or a TDP table writes it.

    Returns:
        The normalised name, e.g. ``"amd epyc 7763"``.
    """
    text = _TRADEMARKS.sub(" ", name).lower()
    text = _FREQUENCY.sub(" ", text)
    text = _CORE_COUNT.sub(" ", text)
    tokens = [t for t in _SPLIT.split(text) if t and t not in _NOISE_WORDS]
    return " ".join(tokens)


def _tokens(normalized: str) -> frozenset[str]:
    return frozenset(normalized.split())


def _strip_suffix(token: str) -> str:
    """``8480+`` -> ``8480``, ``7950x`` -> ``7950``: the number of a model token."""
    match = re.match(r"^[a-z]*-?\d+", token)
    return match.group(0) if match else token


class _TdpTable:
    """The bundled table, indexed for exact and token lookups (loaded once)."""

    def __init__(self, rows: dict[str, float]) -> None:
        self.exact = rows

    def match(self, query: str) -> tuple[str, float] | None:
        normalized = normalize_cpu_model(query)
        if not normalized:
            return None
        if normalized in self.exact:
            return normalized, self.exact[normalized]
        query_tokens = _tokens(normalized)
        digit_tokens = [t for t in query_tokens if any(c.isdigit() for c in t)]
        if not digit_tokens:
            return None  # "AMD EPYC" alone names no model: refuse to guess
        query_numbers = {_strip_suffix(t) for t in digit_tokens}
        # a substring scan of ~5,000 short keys takes well under a millisecond: no index needed
        # short numbers ("ryzen 7", "13th gen") are in thousands of names: scan for the long ones
        probes = [n for n in query_numbers if len(n) >= 3] or list(query_numbers)
        candidates = [m for m in self.exact if any(n in m for n in probes)]
        best: tuple[tuple[int, int, int], str] | None = None
        for model in candidates:
            model_tokens = _tokens(model)
            exact_digit = sum(1 for t in digit_tokens if t in model_tokens)
            model_digit = [t for t in model_tokens if any(c.isdigit() for c in t)]
            # every number the table row names must be in the query ("i7-8700" != "i7-8700k"
            # only by suffix; "8480" must not match "8468")
            if not all(_strip_suffix(t) in query_numbers for t in model_digit):
                continue
            shared = len(model_tokens & query_tokens)
            extra = len(model_tokens - query_tokens)
            score = (exact_digit, shared, -extra)
            if best is None or score > best[0] or (score == best[0] and model < best[1]):
                best = (score, model)
        if best is None:
            return None
        # the vendor/family words must agree with the query where the query has them
        model = best[1]
        return model, self.exact[model]


_table: _TdpTable | None = None
_table_lock = threading.Lock()


def _data_path() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "cpu_tdp.csv"


def load_tdp_table(path: str | Path | None = None) -> _TdpTable:
    """Load (once) and return the TDP table; ``path`` overrides the bundled file."""
    global _table
    if path is not None:
        return _TdpTable(_read_rows(Path(path)))
    with _table_lock:
        if _table is None:
            _table = _TdpTable(_read_rows(_data_path()))
        return _table


def _read_rows(path: Path) -> dict[str, float]:
    # plain string splitting: about 3x faster than csv.DictReader on this 5,000-row file
    rows: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        if not line or line.startswith("#") or line == "model,tdp_w":
            continue
        model, _, tdp_w = line.rpartition(",")
        rows[model.strip('"')] = float(tdp_w)
    return rows


def lookup_tdp_w(model_name: str) -> tuple[str, float] | None:
    """The TDP in watts of a CPU model, from the bundled table.

    Args:
        model_name: the CPU model name (any spelling /proc/cpuinfo uses).

    Returns:
        ``(matched_table_model, tdp_w)`` or None when no row matches with confidence.
    """
    return load_tdp_table().match(model_name)


@functools.lru_cache(maxsize=8)
def read_cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> tuple[str, int]:
    """The CPU model name and the number of sockets (physical packages).

    Reads ``cpuinfo_path`` (Linux); elsewhere falls back to ``platform.processor()`` and one
    socket. Never imports a cpuinfo package (they are slow).

    Returns:
        ``(model_name, sockets)``; model_name is "" when unknown.
    """
    model = ""
    physical_ids: set[str] = set()
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "physical id":
                    physical_ids.add(value.strip())
                elif key in ("Hardware", "Processor") and not model:
                    model = value.strip()  # some ARM kernels
    except OSError as error:
        logger.debug("cannot read %s: %s", cpuinfo_path, error)
    if not model:
        import platform  # only where /proc/cpuinfo is missing

        model = platform.processor() or ""
    return model, max(1, len(physical_ids))
