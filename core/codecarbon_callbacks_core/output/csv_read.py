"""Reading ``emissions.csv`` and ``emissions_windows.csv`` back into typed DataFrames (pandas is
imported when called)."""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING

from codecarbon_callbacks_core.output.csv_file import TEXT_COLUMNS, unguard_cell

if TYPE_CHECKING:
    import pandas

#: columns read as text (the metadata JSON is parsed)
_TEXT_COLUMNS = TEXT_COLUMNS | {"metadata"}
_INT_COLUMNS = {"cpu_count", "gpu_count", "epoch"}
_TIME_COLUMNS = {"timestamp", "start_timestamp", "end_timestamp"}


#: an ISO 8601 timestamp that ends with its zone: ``Z``, ``+00:00``, ``-0500``, ``+05``
_ZONE_SUFFIX = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def read_emissions(
    path: str | os.PathLike[str], *, tz: str | datetime.tzinfo | None = None
) -> pandas.DataFrame:
    """Read ``emissions.csv`` or ``emissions_windows.csv`` into a DataFrame with typed columns.

    Numbers are floats (counts and epochs nullable integers), ``metadata`` is parsed from JSON
    into dicts, and the time columns (``timestamp``, ``start_timestamp``, ``end_timestamp``)
    become datetimes:

    - Timestamps that carry a zone (ours are written in UTC, ``...+00:00``) keep their instant:
      without ``tz`` such a column is UTC (``datetime64[..., UTC]``).
    - Zone-less timestamps (CodeCarbon writes the local time of the machine that ran, with no
      zone) are left naive: no zone is guessed. A column that mixes both (a CodeCarbon file we
      appended to) is then of ``object`` dtype, naive and UTC ``Timestamp`` values side by side.
    - With ``tz`` (a zone name such as ``"Europe/Paris"``, a ``tzinfo``, or ``"local"`` for this
      machine's zone), zone-less timestamps are read as local times in that zone and zoned ones
      are converted to it, so every time column is one ``datetime64[..., tz]`` column. A local
      time that does not exist or is ambiguous in that zone (at a daylight-saving change)
      becomes ``NaT``.

    Empty cells are ``NaT``.

    Text cells that were written with a formula guard (a leading ``'`` before ``=``, ``+``,
    ``-``, ``@``, a tab, a carriage return or ``'``) lose exactly that ``'``, so every text reads
    back as it was given; numeric columns are parsed as they are.

    Args:
        path: the CSV file (ours, or one CodeCarbon wrote).
        tz: the zone of the zone-less timestamps, and the zone of the result (default: none).

    Raises:
        OSError: the file cannot be read.
        ValueError: a cell of a typed column cannot be parsed (a time or an integer column), or
            ``tz`` is not a time zone.

    Example:
        >>> runs = read_emissions("emissions.csv")  # doctest: +SKIP
        >>> runs = read_emissions("codecarbon/emissions.csv", tz="Europe/Paris")  # doctest: +SKIP
    """
    import json

    import pandas as pd

    zone = _resolve_tz(tz)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        values = frame[column]
        if column in TEXT_COLUMNS:  # the formula guard we write (see guard_cell) comes off
            values = values.map(unguard_cell)
            frame[column] = values
        if column in _TIME_COLUMNS:
            frame[column] = _read_times(values, zone)
        elif column == "metadata":
            frame[column] = values.map(lambda s: json.loads(s) if s else {})
        elif column in _INT_COLUMNS:
            frame[column] = pd.to_numeric(values.replace("", None)).astype("Int64")
        elif column not in _TEXT_COLUMNS:
            frame[column] = pd.to_numeric(values.replace("", None), errors="coerce").astype(float)
    return frame


def _resolve_tz(tz: str | datetime.tzinfo | None) -> str | datetime.tzinfo | None:
    """``"local"`` -> this machine's zone (daylight saving included); a zone name or tzinfo is
    checked as given.

    Raises:
        ValueError: ``tz`` is not a time zone.
    """
    import pandas as pd

    if tz is None:
        return None
    if isinstance(tz, str) and tz.lower() == "local":
        from dateutil.tz import tzlocal  # a pandas dependency

        return tzlocal()
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, pytz errors: all one answer
        raise ValueError(
            f"tz must be a time zone name (e.g. 'Europe/Paris', 'UTC'), 'local' or a tzinfo, "
            f"got {tz!r}"
        ) from exc
    return tz


def _read_times(values: pandas.Series, tz: str | datetime.tzinfo | None) -> pandas.Series:
    """A time column: zoned cells keep their instant, zone-less ones stay naive unless ``tz``."""
    import pandas as pd

    text = values.str.strip()
    present = text != ""
    zoned = present & text.str.contains(_ZONE_SUFFIX, regex=True)
    naive = present & ~zoned
    aware_times = pd.to_datetime(text[zoned], utc=True, format="ISO8601")
    naive_times = pd.to_datetime(text[naive], format="ISO8601")
    if tz is not None:
        localized = naive_times.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        parts = [aware_times.dt.tz_convert(tz), localized]
    elif not naive.any():
        parts = [aware_times]
    elif not zoned.any():
        parts = [naive_times]
    else:  # both kinds and no zone to reconcile them: each cell keeps its own kind
        result = pd.Series(pd.NaT, index=values.index, dtype=object)
        result[zoned] = list(aware_times)
        result[naive] = list(naive_times)
        return result
    combined = pd.concat([part for part in parts if len(part)] or parts[:1])
    return combined.reindex(values.index)
