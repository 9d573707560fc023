"""synthguard: one command over provenance, watermark and S3 audits.

Argument parsing, output formatting and exit codes live here; media logic lives in the rooms
(provenance/, watermark/, s3sync/). Exit codes: 0 success, 1 a check did not pass, 2 usage error.

Each command group has its own section below: ``_add_<group>(sub)`` registers the parser and sets
``func`` to a ``_cmd_<name>(args) -> int`` handler.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2, no traceback."""


# ----------------------------------------------------------------------------- shared helpers
def console(stderr: bool = False):
    """A rich Console (stderr for progress and messages, so stdout stays machine-readable)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def emit_json(obj: Any, out: str | None = None) -> None:
    """Write JSON to --out or stdout."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    write_text(text, out)


def write_text(text: str, out: str | None = None) -> None:
    if out and out != "-":
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def show_progress(json_mode: bool) -> bool:
    """Progress bars only on an interactive terminal and never in JSON mode."""
    return (not json_mode) and sys.stderr.isatty()


def _parse_csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_aws_options(p: argparse.ArgumentParser) -> None:
    """The options boto3 users expect; AWS_* environment variables apply when they are omitted."""
    p.add_argument("--endpoint-url", default=None, help="AWS endpoint URL (else AWS_ENDPOINT_URL)")
    p.add_argument("--profile", default=None, help="AWS named profile")
    p.add_argument("--region", default=None, help="AWS region")


# ----------------------------------------------------------------------------- keys / sign / verify
# (provenance: issue 2)


# ----------------------------------------------------------------------------- watermark
# (watermark: issue 3)


# ----------------------------------------------------------------------------- audit
# (s3sync: issue 4)


# ----------------------------------------------------------------------------- fingerprint
# (training-asset registry: issue 5)


# ----------------------------------------------------------------------------- posture / controls
# (posture: issue 6)


# ----------------------------------------------------------------------------- main
_GROUPS: list[Callable[[Any], None]] = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthguard",
        description="Prove where AI-generated media came from and find where it leaked.")
    parser.add_argument("--version", action="version", version=f"synthguard {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, obj in list(globals().items()):
        if name.startswith("_add_") and name != "_add_aws_options" and callable(obj):
            obj(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthguard")
    except Exception:
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"synthguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("synthguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # user-facing errors from the rooms carry clear messages
        if os.environ.get("SYNTHGUARD_DEBUG"):
            raise
        from provenance.media import MediaError

        if isinstance(exc, (MediaError, FileNotFoundError, PermissionError, IsADirectoryError, ValueError)):
            print(f"synthguard: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"synthguard: error: {type(exc).__name__}: {exc} (set SYNTHGUARD_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
