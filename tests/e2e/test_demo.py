"""The README's first command: `make demo` (non-interactive) on a fresh state."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_table(tmp_path):
    out = subprocess.run(
        ["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "model: offline provider" in text
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^(\S+)\s+(auto|escalate)\s+.*$", text, re.M)}
    assert len(rows) == 14
    # Every refund ran only after an approval, and only the justified one ran.
    assert "issue_refund $199 (approved by dana.lead)" in rows["refund-outage"]
    assert "issue_refund" not in rows["refund-nogrounds"]
    assert "refunds executed: 1 in_jane_2026_03 $199" in text
    # The injection caused no action; every ticket ended answered or with a human.
    assert re.search(r"^injection\s+escalate\s+handoff\s+-\s+\d+\s", rows["injection"] + " ", re.M)
    # Why each handoff went to people, the reply each customer got, and what Slack showed the people deciding.
    assert "why: The ticket tries to give the agent instructions (possible prompt injection)" in text
    assert "why: The customer disputes a charge" in text and "agent_handoff" not in text
    assert "reply: Hi Jane, Good news: we have refunded $199 for invoice in_jane_2026_03" in text
    slack = text.split("Slack messages (what the people deciding saw):", 1)[1]
    assert "--- refund-outage" in slack and "Recommendation: “Full refund of $199" in slack
    # the agent's note and the recommendation agree: no "would not refund in full" above a full refund
    nogrounds = slack.split("--- refund-nogrounds", 1)[1].split("--- ", 1)[0]
    assert "Recommendation: “Partial refund of $99.50 of $199" in nogrounds and "propose $99.50" in nogrounds
    assert all(
        "Full refund" not in part for part in slack.split("--- ") if "would not refund in full" in part
    )
    assert all(("responded" in row) or ("handoff" in row) for row in rows.values())
    assert "chain verified" in text


def test_demo_asks_for_each_decision_in_a_terminal(tmp_path):
    """In a terminal (a pseudo-terminal here) the demo shows the request and asks; `d REASON` denies."""
    tickets = tmp_path / "one.jsonl"
    tickets.write_text(
        json.dumps(
            {
                "name": "refund",
                "subject": "Refund please",
                "body": "Please refund my November payment.",
                "requester_email": "priya.patel@example.com",
            }
        )
        + "\n"
    )
    command = f"{sys.executable} -m support_agent_local.cli demo --decisions ask --tickets {tickets}"
    out = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        cwd=ROOT,
        input="d outside the refund window\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "Recommendation: “Partial refund of $99.50 of $199" in out.stdout
    assert "Decide (a=approve, p=partial AMOUNT, d=deny REASON, r=reply_manually TEXT):" in out.stdout
    assert re.search(r"refund\s+escalate\s+responded\s+- \(deny \(outside the refund window\)\)", out.stdout)


def test_demo_json_on_own_tickets(tmp_path):
    tickets = tmp_path / "mine.csv"
    tickets.write_text(
        "subject,body,requester_email\nOrder,Where is my order ORD-5001?,jane.smith@example.com\n"
        "Angry,I want to speak to a human now,jane.smith@example.com\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "support_agent_local.cli",
            "demo",
            "--decisions",
            "auto",
            "--tickets",
            str(tickets),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert [(s["route"], s["outcome"]) for s in summary] == [("auto", "responded"), ("escalate", "handoff")]
    assert "ORD-5001" in summary[0]["replies"][0]
    assert summary[0]["slack"] == [] and "Support Handoff" in summary[1]["slack"][0]


def test_demo_with_real_backends_keeps_every_outcome():
    """`support-agent demo --backends real`: the same tickets through Zendesk (stand-in), localstripe,
    the customer API and Cognito on moto end as they do on the embedded systems."""
    tickets = [
        line
        for line in (ROOT / "local" / "support_agent_local" / "data" / "demo_tickets.jsonl")
        .read_text()
        .splitlines()
        if json.loads(line)["name"] in {"order", "refund-outage", "deletion", "injection"}
    ]
    path = ROOT / ".demo" / "real-backends.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(tickets) + "\n")
    cli = [sys.executable, "-m", "support_agent_local.cli", "demo", "--decisions", "auto", "--json"]
    out = subprocess.run(
        [*cli, "--backends", "real", "--tickets", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = {r["ticket"]: r for r in json.loads(out.stdout)}
    assert runs["order"]["outcome"] == "responded" and "ORD-5001" in runs["order"]["replies"][0]
    assert [a["tool"] for a in runs["refund-outage"]["actions"]] == ["issue_refund"]
    assert [a["tool"] for a in runs["deletion"]["actions"]] == ["delete_account"]
    assert (runs["injection"]["outcome"], runs["injection"]["actions"]) == ("handoff", [])
