"""``codecarbon-callbacks resend [OUTPUT_DIR]``: deliver the spool of records not yet delivered.

The delivery itself is the core's :mod:`codecarbon_callbacks_core.output.resend`; this module
picks the endpoints, prints the counts and names what is left and why.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from codecarbon_callbacks.cli._common import PROG, CliError

if TYPE_CHECKING:
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.output.resend import ResendResult


def add_parser(commands: Any) -> None:
    """Add the ``resend`` command to the subparsers ``commands``."""
    resend = commands.add_parser(
        "resend",
        help="deliver the spool of records not yet delivered",
        description="Send now what the HTTP outputs (webhook, CodeCarbon API) could not deliver "
        "and kept in OUTPUT_DIR/.codecarbon_spool, and write back into OUTPUT_DIR "
        "the CSV rows that could not be written there when a run stopped (kept in "
        "a fallback file in the user's cache folder). Without --emissions-endpoint or "
        "--api-endpoint, each record goes to the endpoint it was spooled for (with "
        "the credentials of the configuration when it names that endpoint). With "
        "them, only the records spooled for those endpoints are sent: the options "
        "select, they never redirect records to another endpoint. Records left for "
        "other endpoints are named and the exit code is 1. Credentials are used for "
        "the requests, never written to the spool or printed.",
        epilog="Example: %(prog)s runs --emissions-endpoint 'https://USER:PASSWORD@host/emissions'",
    )
    resend.add_argument(
        "output_dir",
        nargs="?",
        default=".",
        metavar="OUTPUT_DIR",
        help="the tracker's output_dir (default .)",
    )
    resend.add_argument(
        "--emissions-endpoint",
        metavar="URL",
        help="send only the webhook records spooled for URL (matched without "
        "credentials or query; it filters, it does not redirect); its "
        "user:password@ or query token is used for the requests, never "
        "stored",
    )
    resend.add_argument(
        "--api-endpoint",
        metavar="URL",
        help="send only the CodeCarbon API records spooled for URL (it filters, "
        "it does not redirect)",
    )
    resend.add_argument(
        "--api-key",
        help="the CodeCarbon API key (else CODECARBON_API_KEY, "
        "else api_key in .codecarbon.config); never stored",
    )
    resend.add_argument(
        "--include-uncertain",
        action="store_true",
        help="also re-send API records that may have arrived already",
    )
    resend.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="timeout of each request, seconds (default 5)",
    )
    resend.add_argument("--json", action="store_true", help="print the counts as JSON")
    resend.add_argument(
        "--keep-fallback",
        action="store_true",
        help="only name the fallback files of CSV rows that could not be "
        "written to OUTPUT_DIR; do not write them back",
    )
    resend.set_defaults(handler=run)


#: how to give each kind's credentials to ``resend`` (never stored in the spool)
_CREDENTIALS_HELP = {
    "webhook": "give them in the URL: --emissions-endpoint 'https://USER:PASSWORD@host/path' "
    "(or a query token), or CODECARBON_EMISSIONS_ENDPOINT, or emissions_endpoint in "
    ".codecarbon.config",
    "api": "give the API key: --api-key KEY, or CODECARBON_API_KEY, or api_key in "
    ".codecarbon.config",
}
_ENDPOINT_FLAG = {"webhook": "--emissions-endpoint", "api": "--api-endpoint"}


def _resend_targets(
    args: argparse.Namespace,
    config: TrackerConfig,
    stored: set[tuple[str, str]],
) -> list[tuple[str, str]]:
    """The (kind, URL) pairs to deliver to: the endpoints given, else every stored endpoint.

    A given endpoint selects the records spooled for it, it never redirects others. A stored
    endpoint is posted to with the configuration's URL (and so its credentials) when that URL
    is the same endpoint; one whose query was not stored cannot be posted to without it.
    """
    from codecarbon_callbacks_core.output._util import sanitize_url

    given = [
        (kind, url)
        for kind, url in (("webhook", args.emissions_endpoint), ("api", args.api_endpoint))
        if url
    ]
    for kind, url in given:
        if not url.startswith(("http://", "https://")):
            raise CliError(
                f"{_ENDPOINT_FLAG[kind]} must be an http:// or https:// URL, got "
                f"{sanitize_url(url)!r}"
            )
    if given:
        return given
    configured = {"webhook": config.emissions_endpoint, "api": config.api_endpoint}
    targets = []
    for kind, endpoint in sorted(stored):
        if kind not in _ENDPOINT_FLAG:
            continue  # a kind this version cannot send: left, and named
        url = configured.get(kind)
        if url and sanitize_url(url) == endpoint:
            targets.append((kind, url))
        elif "?" not in endpoint:
            targets.append((kind, endpoint))
    return targets


def _resend_notes(
    spool_dir: Path,
    output_dir: Path,
    results: list[ResendResult],
    left: dict[tuple[str, str], int],
    unreadable: list[str],
    endpoints_given: bool,
) -> list[str]:
    """One line per thing the user must act on: refused credentials, endpoints not delivered
    to, unreadable files. Endpoints are named without credentials or query values."""
    notes = []
    for result in results:
        if result.unauthorized:
            notes.append(
                f"{result.kind} {result.endpoint} refused the credentials (HTTP "
                f"{result.auth_status}): {result.unauthorized} record(s) kept in {spool_dir}; "
                f"{_CREDENTIALS_HELP[result.kind]}. They are used for the request and never "
                "stored in the spool."
            )
    for (kind, endpoint), count in left.items():
        flag = _ENDPOINT_FLAG.get(kind, "--emissions-endpoint")
        url = endpoint.replace("?***", "?QUERY") if "?" in endpoint else endpoint
        how = f"to deliver them: {PROG} resend {shlex.quote(str(output_dir))} {flag} {url}"
        if "?" in endpoint:
            how += " (the URL's query was not stored: give it in full)"
        why = (
            " (the endpoints given select the records spooled for them; they do not "
            "redirect others)"
            if endpoints_given
            else ""
        )
        notes.append(
            f"{count} record(s) spooled for {kind} {endpoint} were not delivered{why}; {how}"
        )
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
        notes.append(
            f"{len(unreadable)} spool file(s) cannot be read and were left in place "
            f"(not sent, not removed): {shown}"
        )
    return notes


def _write_counts(
    out: TextIO,
    as_json: bool,
    counts: dict[str, int],
    left: dict[tuple[str, str], int],
    unreadable: list[str],
    remaining: int,
    spool_dir: Path,
) -> None:
    if as_json:
        not_delivered_to = [
            {"kind": kind, "endpoint": endpoint, "records": count}
            for (kind, endpoint), count in left.items()
        ]
        out.write(
            json.dumps(
                {
                    **counts,
                    "other_endpoints": sum(left.values()),
                    "unreadable": len(unreadable),
                    "remaining": remaining,
                    "not_delivered_to": not_delivered_to,
                }
            )
            + "\n"
        )
        return
    out.write(
        f"Delivered {counts['delivered']}, failed {counts['failed']} (kept for later), "
        f"uncertain {counts['uncertain']} (kept; --include-uncertain re-sends them), "
        f"refused credentials {counts['unauthorized']} (kept), "
        f"rejected {counts['rejected']} (removed); {remaining} left in {spool_dir}"
        f" ({sum(left.values())} for endpoints not delivered to, {len(unreadable)} "
        "unreadable).\n"
    )


def _problems(
    counts: dict[str, int], left: dict[tuple[str, str], int], unreadable: list[str]
) -> list[str]:
    """What makes the exit code 1: records not delivered, for whatever reason."""
    problems = []
    if counts["failed"]:
        problems.append(f"{counts['failed']} record(s) could not be delivered")
    if counts["unauthorized"]:
        problems.append(f"{counts['unauthorized']} record(s) refused for their credentials")
    if left:
        named = ", ".join(f"{kind} {endpoint}" for kind, endpoint in left)
        problems.append(
            f"{sum(left.values())} record(s) spooled for endpoints not delivered to ({named})"
        )
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable spool file(s)")
    return problems


def _restore_fallbacks(output_dir: Path, keep: bool, out: TextIO) -> list[str]:
    """Write back the CSV fallback files of ``output_dir`` (or, with ``keep``, only name them);
    one line each on ``out``. Returns what makes the exit code 1: rows still in a fallback file
    because the folder cannot be written (with ``keep``: none)."""
    from codecarbon_callbacks_core.output.file import fallback_files, restore_fallback

    problems = []
    for fallback in fallback_files(output_dir):
        target = output_dir / fallback.name
        if keep:
            out.write(
                f"CSV rows that could not be written to {target} are in {fallback} "
                f"(left there: --keep-fallback).\n"
            )
            continue
        try:
            count = restore_fallback(fallback, output_dir)
        except (OSError, ValueError) as e:
            out.write(
                f"CSV rows that could not be written to {target} stay in {fallback}: "
                f"{target} cannot be written ({e}).\n"
            )
            problems.append(f"CSV rows for {target} stay in {fallback}")
            continue
        out.write(
            f"Wrote back {count} CSV row(s) to {target} from the fallback file "
            f"{fallback} (removed).\n"
        )
    return problems


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Write back the CSV fallback files of ``args.output_dir`` and deliver its spool; returns 0
    when nothing is left undelivered.

    Raises:
        CliError: the folder is missing (and has no fallback file), CSV rows stay in a fallback
            file, or records stay in the spool (the message says why).
    """
    from codecarbon_callbacks_core.output.file import fallback_files

    output_dir = Path(args.output_dir)
    if not output_dir.is_dir() and not fallback_files(output_dir):
        raise CliError(f"{args.output_dir}: no such folder")
    fallback_problems = _restore_fallbacks(
        output_dir, getattr(args, "keep_fallback", False), sys.stderr if args.json else out
    )
    try:
        code = _resend_spool(args, out) if output_dir.is_dir() else 0
    except CliError as e:
        if fallback_problems:
            raise CliError(f"{'; '.join(fallback_problems)}; {e}") from None
        raise
    if fallback_problems:
        raise CliError("; ".join(fallback_problems))
    return code


def _resend_spool(args: argparse.Namespace, out: TextIO) -> int:
    """Deliver the spool of ``args.output_dir``; returns 0 when nothing is left undelivered.

    Raises:
        CliError: records stay in the spool (the message says why).
    """
    try:
        from codecarbon_callbacks_core.output.resend import left_by_endpoint, resend_endpoint
        from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME, Spool
    except ImportError as e:
        raise CliError(f"the spool is not available in this installation ({e})") from None
    from codecarbon_callbacks_core.config import resolve_config

    output_dir = Path(args.output_dir)
    spool_dir = output_dir / SPOOL_DIRNAME
    if not spool_dir.is_dir():
        out.write(f"Nothing to resend: no spool in {output_dir} ({SPOOL_DIRNAME} is absent).\n")
        return 0
    config = resolve_config({"output_dir": str(output_dir)})
    spool = Spool(str(output_dir))
    entries = spool.entries()
    if not entries and not spool.unreadable():
        out.write(f"Nothing to resend: the spool in {spool_dir} is empty.\n")
        return 0
    api_key = args.api_key or config.api_key
    targets = _resend_targets(args, config, {(e.kind, e.endpoint) for e in entries})
    results = [
        resend_endpoint(
            spool,
            kind,
            url,
            api_key=api_key if kind == "api" else None,
            include_uncertain=args.include_uncertain,
            timeout_s=args.timeout,
        )
        for kind, url in targets
    ]
    counts = {
        key: sum(getattr(r, key) for r in results)
        for key in ("delivered", "failed", "uncertain", "rejected", "unauthorized")
    }
    left = left_by_endpoint(spool, targets)
    unreadable = spool.unreadable()
    remaining = len(spool.entries()) + len(unreadable)
    _write_counts(out, args.json, counts, left, unreadable, remaining, spool_dir)
    given = bool(args.emissions_endpoint or args.api_endpoint)
    for note in _resend_notes(spool_dir, output_dir, results, left, unreadable, given):
        sys.stderr.write(f"{PROG}: {note}\n")
    problems = _problems(counts, left, unreadable)
    if problems:
        raise CliError(f"{'; '.join(problems)}; they stay in {spool_dir}")
    return 0
