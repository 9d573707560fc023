"""A self-contained HTML report (no scripts, no external assets): summary, problem objects first,
filterable by the browser's find; safe against hostile keys (everything is escaped)."""
from __future__ import annotations

import html
import json
from typing import Any

from ..models import STATUSES, AuditResult

COLORS = {"ok": "#1a7f37", "watermark_only": "#0969da", "untrusted": "#9a6700", "missing_provenance": "#cf222e",
          "unreadable": "#8250df", "invalid_provenance": "#a40e26", "leaked_training_asset": "#82071e"}

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#1f2328}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;width:100%} th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f6f8fa} td.n{text-align:right}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;white-space:nowrap}
code{font-size:12px;word-break:break-all} .muted{color:#656d76} details{margin:.3em 0}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{COLORS.get(status, "#57606a")}">{_e(status)}</span>'


def to_html(result: AuditResult, *, title: str | None = None, **_: Any) -> str:
    s = result.summary
    counts = s.get("counts", {})
    skipped = s.get("skipped", {}) or {}
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title or 'synthguard audit ' + result.run_id)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title or 'synthguard S3 audit')}</h1>",
           f'<p class="muted">Run <code>{_e(result.run_id)}</code> &middot; targets: '
           f"{', '.join('<code>' + _e(t) + '</code>' for t in s.get('targets', []))}"
           f"{'' if s.get('completed', True) else ' &middot; <b>run not completed</b>'}</p>",
           "<h2>Summary</h2><table><tr><th>status</th><th>objects</th></tr>"]
    for st in reversed(STATUSES):
        out.append(f'<tr><td>{_badge(st)}</td><td class="n">{int(counts.get(st, 0))}</td></tr>')
    out.append(f'<tr><td>skipped (not audited)</td><td class="n">{int(skipped.get("count", 0))}</td></tr></table>')
    if skipped.get("reasons"):
        out.append("<p>Skipped: " + "; ".join(f"{int(n)} {_e(r)}" for r, n in skipped["reasons"].items()) + "</p>")
    origins = s.get("cloudfront_skipped_origins") or ()
    if origins:
        out.append("<p>CloudFront origins not audited:</p><ul>" + "".join(
            f"<li><code>{_e(o.get('distribution_id'))}/{_e(o.get('origin_id'))}</code> {_e(o.get('origin_domain'))}: "
            f"{_e(o.get('reason'))}</li>" for o in origins) + "</ul>")
    facts = [(k, s.get(k)) for k in ("objects", "downloaded", "reused", "resumed_objects", "retries", "bytes_read",
                                     "elapsed_s", "objects_per_s") if s.get(k) is not None]
    out.append('<p class="muted">' + " &middot; ".join(f"{_e(k)}: {_e(v)}" for k, v in facts) + "</p>")

    order = {st: i for i, st in enumerate(STATUSES)}
    objs = sorted(result.objects, key=lambda o: (order.get(o.status, 99), o.bucket, o.key))
    out.append(f"<h2>Objects ({len(objs)})</h2><table><tr><th>status</th><th>severity</th><th>object</th><th>C2PA</th>"
               "<th>watermark</th><th>size</th><th>detail</th></tr>")
    for o in objs:
        c2 = o.c2pa or {}
        wm = o.watermark or {}
        wms = (wm.get("payload") or "yes") if wm.get("detected") else ("not checked" if wm.get("skipped") else
                                                                       ("no" if wm else "-"))
        codes = ", ".join(c2.get("codes") or [])
        detail = o.error or (f"training asset {(o.training_match or {}).get('asset_id')}" if o.training_match else "")
        if not o.error and o.status == "leaked_training_asset":
            detail += f"; {result.exposure_of(o).why}"
        if not detail and codes and o.status != "ok":
            detail = codes
        ev = json.dumps(result.object_dict(o), indent=1, default=str)
        out.append(f"<tr><td>{_badge(o.status)}</td><td>{_e(result.severity_of(o))}</td><td><code>{_e(o.uri)}</code>"
                   f"{'<br><span class=muted>version ' + _e(o.version_id) + '</span>' if o.version_id else ''}</td>"
                   f"<td>{_e(c2.get('state') or '-')}</td><td>{_e(wms)}</td><td class=\"n\">{_e(o.size)}</td>"
                   f"<td>{_e(detail)}<details><summary class=muted>evidence</summary><pre>{_e(ev)}</pre>"
                   "</details></td></tr>")
    out.append("</table>")
    if result.edge_samples:
        out.append("<h2>CloudFront edge samples</h2><table><tr><th>sample</th></tr>")
        for e in result.edge_samples:
            d = e.to_dict() if hasattr(e, "to_dict") else e
            out.append(f"<tr><td><pre>{_e(json.dumps(d, indent=1, default=str))}</pre></td></tr>")
        out.append("</table>")
    if result.findings:
        out.append("<h2>Findings</h2><table><tr><th>check</th><th>resource</th><th>status</th><th>severity</th>"
                   "<th>evidence</th></tr>")
        for f in result.findings:
            d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
            out.append(f"<tr><td>{_e(d.get('check'))}</td><td><code>{_e(d.get('resource'))}</code></td>"
                       f"<td>{_e(d.get('status'))}</td><td>{_e(d.get('severity'))}</td>"
                       f"<td><pre>{_e(json.dumps(d.get('evidence'), indent=1, default=str))}</pre></td></tr>")
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)
