"""A terminal table (rich): the summary counts, then every object that is not ``ok`` (all with
``show_ok``), then findings and edge samples.

Every string that comes from a bucket, a server or a decoder (keys, URLs, errors) is escaped: rich
reads ``[...]`` as markup, and a key like ``a[/bold]b.jpg`` would otherwise vanish or break the
report."""
from __future__ import annotations

import io
from typing import Any

from ..models import STATUSES, AuditResult

STYLE = {"ok": "green", "watermark_only": "cyan", "untrusted": "yellow", "missing_provenance": "red",
         "unreadable": "magenta", "invalid_provenance": "bold red", "leaked_training_asset": "bold red"}


def to_table(result: AuditResult, *, show_ok: bool = True, limit: int = 200, width: int | None = None,
             color: bool = False, **_: Any) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buf = io.StringIO()
    if width is None:  # wide enough that object keys are never folded mid-name
        longest = max((len(o.uri) + len(o.version_id or "") for o in result.objects), default=0)
        width = max(120, min(400, longest + 150))
    con = Console(file=buf, width=width, force_terminal=color, no_color=not color, highlight=False,
                  soft_wrap=False)
    s = result.summary
    counts = s.get("counts", {})
    skipped = s.get("skipped", {}) or {}
    head = Table(title=f"synthguard audit {result.run_id}", show_header=True, header_style="bold")
    head.add_column("status")
    head.add_column("objects", justify="right")
    for st in reversed(STATUSES):
        head.add_row(f"[{STYLE.get(st, '')}]{st}[/]", str(counts.get(st, 0)))
    head.add_row("skipped (not audited)", str(skipped.get("count", 0)))
    con.print(head)
    if skipped.get("reasons"):
        con.print(escape("skipped: " + "; ".join(f"{n} {r}" for r, n in skipped["reasons"].items())))
    for o in s.get("cloudfront_skipped_origins") or ():
        con.print(escape(f"CloudFront origin not audited: {o.get('distribution_id')}/{o.get('origin_id')} "
                         f"{o.get('origin_domain')}: {o.get('reason')}"))
    stats = [f"{s.get('objects', len(result.objects))} objects"]
    for k, label in (("downloaded", "downloaded"), ("reused", "unchanged (not downloaded)"),
                     ("resumed_objects", "done before resume"), ("retries", "retries")):
        if s.get(k):
            stats.append(f"{s[k]} {label}")
    if s.get("elapsed_s") is not None:
        stats.append(f"{s['elapsed_s']} s")
    if s.get("objects_per_s"):
        stats.append(f"{s['objects_per_s']} objects/s")
    if not s.get("completed", True):
        stats.append("RUN NOT COMPLETED")
    con.print(", ".join(stats))

    rows = [o for o in result.objects if show_ok or o.status != "ok"]
    order = {st: i for i, st in enumerate(STATUSES)}
    rows.sort(key=lambda o: (order.get(o.status, 99), o.bucket, o.key))
    if rows:
        t = Table(show_header=True, header_style="bold", expand=False)
        longest = max((len(o.uri) for o in rows[:limit]), default=10)
        t.add_column("status", no_wrap=True)
        t.add_column("severity", no_wrap=True)
        t.add_column("object", overflow="fold", min_width=min(longest + 2, 160))
        t.add_column("c2pa", no_wrap=True)
        t.add_column("watermark", no_wrap=True)
        t.add_column("detail", overflow="fold")
        for o in rows[:limit]:
            c2 = (o.c2pa or {}).get("state") or "-"
            wm = o.watermark or {}
            wms = (wm.get("payload") or "yes") if wm.get("detected") else ("-" if not wm or wm.get("skipped") else "no")
            detail = o.error or ""
            if not detail and o.training_match:
                tm = o.training_match
                detail = f"training asset {tm.get('asset_id')} (distance {tm.get('distance')})"
                if o.status == "leaked_training_asset":
                    detail += f"; {result.exposure_of(o).why}"
            if not detail and o.c2pa and o.status in ("invalid_provenance", "untrusted"):
                detail = ", ".join((o.c2pa.get("codes") or [])[:2]) or str(o.c2pa.get("reason") or "")
            t.add_row(f"[{STYLE.get(o.status, '')}]{o.status}[/]", result.severity_of(o),
                      escape(o.uri + (f" ({o.version_id})" if o.version_id else "")), escape(c2), escape(wms),
                      escape(detail))
        con.print(t)
        if len(rows) > limit:
            con.print(f"... {len(rows) - limit} more (use --format json/csv/html for all)")
    if result.edge_samples:
        t = Table(title="CloudFront edge samples", show_header=True, header_style="bold")
        for col in ("url", "origin c2pa", "edge c2pa", "preserved", "detail"):
            t.add_column(col, overflow="fold")
        for e in result.edge_samples:
            d = e.to_dict() if hasattr(e, "to_dict") else dict(e)
            cells = (d.get("url", ""), d.get("origin_c2pa_state", d.get("origin_state", "")),
                     d.get("edge_c2pa_state", d.get("edge_state", "")), d.get("provenance_preserved", ""),
                     d.get("error") or d.get("verdict") or d.get("reason") or "")
            t.add_row(*(escape(str(c)) for c in cells))
        con.print(t)
    if result.findings:
        t = Table(title="Findings", show_header=True, header_style="bold")
        for col in ("check", "resource", "status", "severity"):
            t.add_column(col, overflow="fold")
        for f in result.findings:
            d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
            t.add_row(*(escape(str(d.get(c, ""))) for c in ("check", "resource", "status", "severity")))
        con.print(t)
    return buf.getvalue()
