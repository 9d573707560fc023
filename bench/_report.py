"""Write one benchmark's section into BENCHMARKS.md without touching the others.

Each bench script owns a ``## Title`` section; re-running it replaces only that section.
"""
from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = ("# synthguard benchmarks\n\n"
          "Written by the scripts in `bench/` (each owns one section). Anchors run in the same run as "
          "synthguard; absolute times vary on this shared machine, so compare within a section.\n")


def machine_line() -> str:
    """One line describing the host and its load, to print above every table."""
    try:
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return (f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {load}.")


def write_section(title: str, markdown: str, path: Path = BENCHMARKS) -> Path:
    """Replace (or append) the ``## title`` section of BENCHMARKS.md with ``markdown``."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    body = f"## {title}\n\n{markdown.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return path


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
