"""A rich progress bar for a running audit (objects done, objects/s, ETA once listing is done).

Only for terminals: the CLI does not create it in JSON mode or when stderr is not a TTY.
"""
from __future__ import annotations

from typing import Any


class AuditProgress:
    """Use as ``with AuditProgress(console) as p: Auditor(..., progress=p.update)``."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._p = Progress(SpinnerColumn(), TextColumn("[bold]audit[/]"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[rate]} obj/s"), TextColumn("{task.fields[note]}"),
                           TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                           console=console, transient=True, refresh_per_second=4)
        self._task = None

    def __enter__(self) -> "AuditProgress":
        self._p.__enter__()
        self._task = self._p.add_task("audit", total=None, rate="-", note="listing")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._p.__exit__(*exc)

    def update(self, stats: dict[str, Any]) -> None:
        done = int(stats.get("done", 0))
        # The total is known only when listing ends; until then it grows with what was listed.
        total = max(done, int(stats.get("listed", 0)) - int(stats.get("skipped", 0)))
        note = "" if stats.get("listing_done") else "listing..."
        self._p.update(self._task, completed=done, total=total if stats.get("listing_done") else None,
                       rate=f"{stats.get('objects_per_s', 0):.0f}", note=note)
