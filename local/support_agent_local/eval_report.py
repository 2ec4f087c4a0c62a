"""The eval's outputs: the terminal table and summary, and a self-contained HTML report.

The HTML page has no external resource (inline CSS and SVG; one inline script that only sorts tables), and
every text from a ticket, a reply or Slack is escaped, so a hostile ticket cannot script the page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, TextIO

from support_agent_local.demo import actions_text, one_line


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}"


def _runs(data: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(t, r) for t in data["tickets"] for r in t["runs"]]


def terminal(data: dict[str, Any], out: TextIO) -> None:
    """The per-ticket table and the summary (what `support-agent eval` prints)."""
    s = data["summary"]

    def say(line: str = "") -> None:
        print(line, file=out)

    say(
        f"Support Agent eval — {data['file']}: {s['tickets']} tickets × {s['runs']} run(s), "
        f"provider {data['provider']}"
    )
    say()
    header = f"{'ticket':<22}{'expected':<10}{'got':<10}{'category':<20}{'outcome':<12}{'actions (decision)':<48}{'tokens':>8}{'cost':>10}{'time':>7}  ok"
    say(header)
    for t, r in _runs(data):
        label = t["name"] if s["runs"] == 1 else f"{t['name']}#{r['run'] + 1}"
        actions = actions_text(r["actions"], "; ".join(r["decisions"]))
        tokens = sum(r["usage"].values())
        seconds = sum(r["seconds"].values())
        say(
            f"{one_line(label, 21):<22}{t['expected_route']:<10}{r['route']:<10}{one_line(r['category'], 19):<20}"
            f"{one_line(r['state'], 11):<12}{one_line(actions, 47):<48}{tokens:>8}{usd(r['cost']):>10}{seconds:>6.1f}s  "
            f"{'✓' if r['passed'] else '✗'}"
        )
        if r["reason"] and r["state"] != "responded":
            say(f"{'':<22}why: {one_line(r['reason'], 112)}")
        if r["reply"]:
            say(f"{'':<22}reply: {one_line(r['reply'], 110)}")
    misses = [(t, r) for t, r in _runs(data) if not r["passed"]]
    if misses:
        say()
        say("misses:")
        for t, r in misses:
            say(f"  {t['name']}: {'; '.join(r['misses'])}")
    say()
    summary(data, out)


def summary(data: dict[str, Any], out: TextIO) -> None:
    s = data["summary"]

    def say(line: str = "") -> None:
        print(line, file=out)

    n = s["ticket_runs"]
    routes = s["route_confusion"]["counts"]
    auto_total = sum(routes.get("auto", {}).values())
    answered = round((s["resolution_rate"] or 0) * n)
    say(f"resolution rate        {pct(s['resolution_rate'])} ({answered}/{n} answered with no person)")
    say(
        f"over-escalation rate   {pct(s['over_escalation_rate'])} "
        f"({routes.get('auto', {}).get('escalate', 0)}/{auto_total} expected auto went to people)"
    )
    for name, b in s["escalation"].items():
        label = "escalation (all)" if name == "all" else f"  {one_line(name, 28)}"
        say(
            f"{label:<31}recall {pct(b['recall']):>7} ({b['caught']}/{b['expected']})   "
            f"precision {pct(b['precision']):>7} ({b['correct']}/{b['escalated']})"
        )
    if s["unfinished"]:
        say(f"unfinished tickets     {s['unfinished']} (neither answered nor with a person)")
    v = s["violations"]
    say(
        f"policy violations      {v['unapproved_action']} actions without approval, {v['policy_refusal']} calls "
        f"refused by policy, {v['reply_on_escalated']} replies on escalated tickets, "
        f"{v['unaudited_side_effect']} side effects outside the audit trail"
    )
    tok = s["tokens"]
    say(
        f"tokens                 input {tok['input']:,}, output {tok['output']:,}, cache read "
        f"{tok['cache_read']:,}, cache write {tok['cache_write']:,}; {pct(s['cache_share'])} of input from cache"
    )
    c = s["cost"]
    unpriced = f"; {c['unpriced_runs']} run(s) on a model without a price" if c["unpriced_runs"] else ""
    say(
        f"cost                   {usd(c['total'])} total, {usd(c['per_ticket'])} per ticket "
        f"(prices as of {c['prices_as_of']}){unpriced}"
    )
    sec = s["seconds"]
    say(
        "time per ticket        "
        + ", ".join(
            f"{label} mean {sec[k]['mean']:.3f}s (p95 {sec[k]['p95']:.3f}s)"
            for k, label in (("intake", "intake"), ("agent", "agent excl. model"), ("model", "model"))
        )
        + f"; approval path {sec['approval_path']['mean']:.3f}s; waiting for people excluded"
    )
    p = s["pass_hat_k"]
    say(
        f"pass^{p['k']}                 {p['mean']:.3f} over {s['tickets']} tickets; "
        f"{p['consistent']}/{s['tickets']} with the same outcome in every run"
    )


def progress_bar(stream: TextIO, width: int = 30) -> Callable[[int, int, str], None]:
    """A progress bar on `stream` (the eval passes it only when stderr is a terminal)."""

    def show(done: int, total: int, name: str) -> None:
        filled = int(width * done / total) if total else width
        end = "\n" if done >= total else ""
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {one_line(name, 30):<30}{end}"
        )
        stream.flush()

    return show


# --- HTML -------------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
.meta{color:#5a6475}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #dde;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.bad{color:#b42318}.good{color:#067647}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #dde;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6fa;cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
.miss{border:1px solid #f3c1bd;border-radius:8px;padding:8px 12px;margin:10px 0;background:#fffafa}
.miss pre{white-space:pre-wrap;background:#f7f7f9;padding:8px;border-radius:6px;margin:4px 0}
svg text{font:12px system-ui,sans-serif}.charts{display:flex;flex-wrap:wrap;gap:24px}
"""

# Sorts a table by the clicked column; records that it ran (the headless-browser test reads both marks).
SCRIPT = """
window.addEventListener('error',function(e){document.body.setAttribute('data-script-error',String(e.message))});
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var t=th.closest('table'),b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort(function(x,y){var a=x.cells[i].dataset.v||x.cells[i].textContent,c=y.cells[i].dataset.v||y.cells[i].textContent;
var na=parseFloat(a),nc=parseFloat(c);var r=(!isNaN(na)&&!isNaN(nc))?na-nc:a.localeCompare(c);return asc?r:-r});
rows.forEach(function(r){b.appendChild(r)})})});
document.body.setAttribute('data-ready','1');
"""


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def confusion_svg(matrix: dict[str, Any], title: str, chart_id: str) -> str:
    """A confusion matrix as an SVG grid: rows expected, columns got, darker for more tickets."""
    labels: list[str] = matrix["labels"]
    counts: dict[str, dict[str, int]] = matrix["counts"]
    if not labels:
        return f'<p id="{e(chart_id)}">No labelled tickets for {e(title)}.</p>'
    cell, left, top = 34, 150, 120
    size = len(labels) * cell
    peak = max([1] + [v for row in counts.values() for v in row.values()])
    parts = [
        f'<svg id="{e(chart_id)}" class="chart confusion" role="img" aria-label="{e(title)}" '
        f'width="{max(left + size + 90, 440)}" height="{top + size + 30}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="4" y="14" font-weight="bold">{e(title)} (rows expected, columns got)</text>',
    ]
    for j, got in enumerate(labels):
        x = left + j * cell + cell / 2
        parts.append(f'<text transform="translate({x},{top - 6}) rotate(-50)">{e(got)}</text>')
    for i, expected in enumerate(labels):
        y = top + i * cell
        parts.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">{e(expected)}</text>')
        for j, got in enumerate(labels):
            value = counts[expected][got]
            shade = 0.08 + 0.85 * value / peak if value else 0.0
            colour = "6,118,71" if expected == got else "180,35,24"
            parts.append(
                f'<rect class="cell" x="{left + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="rgba({colour},{shade:.2f})" stroke="#dde"><title>{e(expected)} → {e(got)}: {value}</title></rect>'
            )
            if value:
                parts.append(
                    f'<text x="{left + j * cell + cell / 2 - 1}" y="{y + cell / 2 + 4}" text-anchor="middle">{value}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(
    values: list[float], title: str, chart_id: str, unit: Callable[[float], str], bins: int = 8
) -> str:
    """The distribution of one figure over ticket-runs, as SVG bars."""
    if not values:
        return f'<p id="{e(chart_id)}">No values for {e(title)}.</p>'
    low, high = min(values), max(values)
    width = (high - low) / bins if high > low else 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / width)) if high > low else 0] += 1
    w, h, left, bottom = 420, 160, 40, 40
    bar = (w - left) / bins
    peak = max(counts) or 1
    parts = [
        f'<svg id="{e(chart_id)}" class="chart histogram" role="img" aria-label="{e(title)}" width="{w}" '
        f'height="{h + bottom + 20}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left}" y="14" font-weight="bold">{e(title)}</text>',
    ]
    for i, c in enumerate(counts):
        bh = (h - 50) * c / peak
        x, y = left + i * bar, 40 + (h - 50) - bh
        start = low + i * width
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{bh:.1f}" fill="#3b6fd8">'
            f"<title>{e(unit(start))} – {e(unit(start + width))}: {c}</title></rect>"
        )
        if c:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{c}</text>')
    parts.append(f'<text x="{left}" y="{h + 10}">{e(unit(low))}</text>')
    parts.append(f'<text x="{w}" y="{h + 10}" text-anchor="end">{e(unit(high))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def tokens_svg(rows: list[tuple[str, dict[str, int]]], chart_id: str) -> str:
    """Tokens per ticket-run, stacked by kind (input, output, cache read, cache write)."""
    kinds = [
        ("input", "#3b6fd8"),
        ("output", "#e08a1e"),
        ("cache_read", "#2e9e6a"),
        ("cache_write", "#8a5cd6"),
    ]
    peak = max([1] + [sum(u.values()) for _, u in rows])
    left, bar_h, w = 170, 14, 560
    height = 30 + len(rows) * (bar_h + 4) + 20
    parts = [
        f'<svg id="{e(chart_id)}" class="chart tokens" role="img" aria-label="Tokens per ticket" width="{w + 20}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        '<text x="0" y="14" font-weight="bold">Tokens per ticket</text>',
    ]
    for k, (kind, colour) in enumerate(kinds):
        parts.append(f'<rect x="{left + k * 95}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + k * 95 + 14}" y="14">{e(kind.replace("_", " "))}</text>')
    for i, (name, usage) in enumerate(rows):
        y = 26 + i * (bar_h + 4)
        parts.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{e(one_line(name, 24))}</text>')
        x = float(left)
        for kind, colour in kinds:
            span = (w - left) * usage.get(kind, 0) / peak
            if span > 0:
                parts.append(
                    f'<rect class="seg" x="{x:.1f}" y="{y}" width="{span:.1f}" height="{bar_h}" fill="{colour}">'
                    f"<title>{e(name)} {e(kind)}: {usage.get(kind, 0):,}</title></rect>"
                )
                x += span
    parts.append("</svg>")
    return "".join(parts)


def html_report(data: dict[str, Any]) -> str:
    """The whole report as one HTML page that opens offline."""
    s = data["summary"]
    runs = _runs(data)
    v = s["violations"]
    cards = [
        ("Resolution rate", pct(s["resolution_rate"]), ""),
        ("Escalation recall", pct((s["escalation"].get("all") or {}).get("recall")), ""),
        ("Escalation precision", pct((s["escalation"].get("all") or {}).get("precision")), ""),
        ("Over-escalation", pct(s["over_escalation_rate"]), ""),
        (
            "Actions without approval",
            str(v["unapproved_action"]),
            "bad" if v["unapproved_action"] else "good",
        ),
        ("Cost per ticket", usd(s["cost"]["per_ticket"]), ""),
        ("Input from cache", pct(s["cache_share"]), ""),
        (f"pass^{s['pass_hat_k']['k']}", f"{s['pass_hat_k']['mean']:.3f}", ""),
    ]
    body = [
        f'<h1>Support Agent eval</h1><p class="meta">{e(data["file"])} — {s["tickets"]} tickets × {s["runs"]} '
        f"run(s), provider {e(data['provider'])}, {e(data['created'])}; prices as of {e(s['cost']['prices_as_of'])} "
        f"({e(s['cost']['prices_source'])})</p>",
        '<div class="cards" id="cards">'
        + "".join(f'<div class="card {cls}">{e(label)}<b>{e(value)}</b></div>' for label, value, cls in cards)
        + "</div>",
        "<h2>Escalation by category</h2>",
        _table(
            "escalation",
            ["category", "recall", "caught / expected", "precision", "correct / escalated"],
            [
                [
                    name,
                    _num(b["recall"], pct(b["recall"])),
                    f"{b['caught']} / {b['expected']}",
                    _num(b["precision"], pct(b["precision"])),
                    f"{b['correct']} / {b['escalated']}",
                ]
                for name, b in s["escalation"].items()
            ],
        ),
        "<h2>Policy</h2>",
        _table(
            "violations",
            ["check", "count"],
            [
                ["actions executed without a recorded approval", _num(v["unapproved_action"])],
                ["tool calls refused by policy or its checks", _num(v["policy_refusal"])],
                ["replies on tickets the guard escalated", _num(v["reply_on_escalated"])],
                ["side effects outside the audit trail", _num(v["unaudited_side_effect"])],
            ],
        ),
        '<h2>Routes and categories</h2><div class="charts">',
        confusion_svg(s["route_confusion"], "Routes", "route-confusion"),
        confusion_svg(s["category_confusion"], "Categories", "category-confusion"),
        '</div><h2>Cost and tokens</h2><div class="charts">',
        histogram_svg(
            [r["cost"] for _, r in runs if r["cost"] is not None],
            "Cost per ticket (USD)",
            "cost-histogram",
            lambda x: f"${x:.4f}",
        ),
        histogram_svg(
            [float(sum(r["usage"].values())) for _, r in runs],
            "Tokens per ticket",
            "token-histogram",
            lambda x: f"{x:,.0f}",
        ),
        "</div>",
        tokens_svg(
            [(t["name"] if s["runs"] == 1 else f"{t['name']}#{r['run'] + 1}", r["usage"]) for t, r in runs],
            "tokens-per-ticket",
        ),
        "<h2>Time per stage</h2>",
        _table(
            "stages",
            ["stage", "mean (s)", "p95 (s)", "total (s)"],
            [
                [
                    label,
                    _num(s["seconds"][k]["mean"], f"{s['seconds'][k]['mean']:.3f}"),
                    _num(s["seconds"][k]["p95"], f"{s['seconds'][k]['p95']:.3f}"),
                    _num(s["seconds"][k]["total"], f"{s['seconds'][k]['total']:.2f}"),
                ]
                for k, label in (
                    ("intake", "intake"),
                    ("agent", "agent (excluding the model)"),
                    ("model", "model"),
                    ("approval_path", "approval path (Slack and back; waiting for people excluded)"),
                )
            ],
        ),
        "<h2>Tickets</h2>",
        _table(
            "tickets",
            ["ticket", "expected", "got", "category", "outcome", "actions", "tokens", "cost", "pass"],
            [
                [
                    t["name"] if s["runs"] == 1 else f"{t['name']}#{r['run'] + 1}",
                    t["expected_route"],
                    r["route"],
                    r["category"],
                    r["state"] + (f": {r['reason']}" if r["reason"] and r["state"] != "responded" else ""),
                    ", ".join(a["tool"] for a in r["actions"]) or "-",
                    _num(sum(r["usage"].values())),
                    _num(r["cost"] or 0, usd(r["cost"])),
                    "✓" if r["passed"] else "✗",
                ]
                for t, r in runs
            ],
        ),
        "<h2>Worst misses</h2>",
        _misses(runs),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>Support Agent eval — {e(data['file'])}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + f"<script>{SCRIPT}</script></body></html>"
    )


def _num(value: float | int | None, shown: str | None = None) -> tuple[str, str]:
    return ("" if value is None else repr(value), shown if shown is not None else f"{value:,}")


def _table(table_id: str, header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, tuple):
            return f'<td class="num" data-v="{e(value[0])}">{e(value[1])}</td>'
        return f"<td>{e(value)}</td>"

    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f'<table class="sortable" id="{e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _misses(runs: list[tuple[dict[str, Any], dict[str, Any]]], limit: int = 10) -> str:
    """The failed ticket-runs, the most serious first: violations, then missed escalations, then the rest."""

    def weight(tr: tuple[dict[str, Any], dict[str, Any]]) -> tuple[int, int, str]:
        t, r = tr
        missed_escalation = t["expected_route"] == "escalate" and r["route"] != "escalate"
        return (-len(r["violations"]), -int(missed_escalation), t["name"])

    failed = sorted(((t, r) for t, r in runs if not r["passed"]), key=weight)[:limit]
    if not failed:
        return '<p id="misses">Every ticket passed.</p>'
    parts = ['<div id="misses">']
    for t, r in failed:
        parts.append(
            f'<div class="miss"><b>{e(t["name"])}</b> — {e("; ".join(r["misses"]))}'
            f"<div>Subject: {e(t['subject'])} · requester {e(t['requester'])}</div>"
            f"<pre>{e(t['body'])}</pre>"
            + (f"<div>Reply sent:</div><pre>{e(r['reply'])}</pre>" if r["reply"] else "")
            + "".join(f"<div>Slack:</div><pre>{e(m)}</pre>" for m in r["slack"][:2])
            + "".join(
                f'<div class="bad">Violation: {e(x["kind"])} — {e(x["detail"])}</div>'
                for x in r["violations"]
            )
            + "</div>"
        )
    parts.append("</div>")
    return "".join(parts)
