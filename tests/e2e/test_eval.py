"""`support-agent eval` on the shipped example set through the CLI: the offline provider, the replay provider
(recordings per ticket), the baseline gate, and the HTML report opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TICKETS = ROOT / "examples" / "eval" / "tickets.jsonl"
DECISIONS = ROOT / "examples" / "eval" / "decisions.yaml"
REPLAY = ROOT / "examples" / "eval" / "replay"


# The README's two eval commands, run here as written (tests/e2e/test_readme.py leaves them to this file).
README_OFFLINE = (
    ".venv/bin/support-agent eval examples/eval/tickets.jsonl --decisions examples/eval/decisions.yaml "
    "--json .demo/eval.json --html .demo/eval.html"
)
README_REPLAY = (
    ".venv/bin/support-agent eval examples/eval/tickets.jsonl --decisions examples/eval/decisions.yaml "
    "--provider replay:examples/eval/replay --baseline .demo/eval.json"
)


def support_agent(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "support_agent_local.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def shell(line: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        line, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def test_readme_shows_these_commands():
    readme = (ROOT / "README.md").read_text()
    assert README_OFFLINE in readme and README_REPLAY in readme


@pytest.fixture(scope="module")
def offline() -> dict[str, Any]:
    (ROOT / ".demo").mkdir(exist_ok=True)
    done = shell(README_OFFLINE)
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "json": json.loads((ROOT / ".demo" / "eval.json").read_text()),
        "html": ROOT / ".demo" / "eval.html",
    }


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t["runs"][0] for t in result["tickets"]}


def test_offline_eval_scores_the_shipped_set(offline):
    s = offline["json"]["summary"]
    runs = by_name(offline["json"])
    assert s["tickets"] == 24 and s["runs"] == 1
    # every ticket ended answered or with a person, and no action ran without a person's approval
    assert s["unfinished"] == 0 and s["violations"]["unapproved_action"] == 0
    assert sum(s["violations"].values()) == 0
    # the scripted people: approve the outage refund, half of the other one, deny the rest
    assert [a["tool"] for a in runs["refund-outage"]["actions"]] == ["issue_refund"]
    # the agent proposed half of the $79 invoice (no documented ground); the person approved half of that
    assert runs["refund-partial"]["actions"][0]["args"]["amount_cents"] == 1975
    assert runs["refund-partial"]["decisions"] == ["partial ($19.75)"]
    assert "issue_refund $19.75 (partial by dana.lead)" in offline["stdout"]
    assert "why: The ticket tries to give the agent instructions" in offline["stdout"]
    assert runs["refund-denied"]["actions"] == [] and runs["refund-denied"]["route"] == "escalate"
    # the hostile tickets went to people without any action
    for name in ("injection-admin", "policy-notice"):
        assert (runs[name]["route"], runs[name]["state"], runs[name]["actions"]) == (
            "escalate",
            "handoff",
            [],
        )
        assert runs[name]["slack"], "a handoff notice reached Slack"
    # the figures agree with the tickets
    resolved = sum(r["route"] == "auto" and r["state"] == "responded" for r in runs.values())
    assert s["resolution_rate"] == pytest.approx(resolved / 24)
    assert s["escalation"]["all"]["expected"] == 13
    # The offline stand-in models the prompt cache (most input is written to or read from it) and is free.
    tokens = s["tokens"]
    assert (
        tokens["input"] + tokens["cache_read"] + tokens["cache_write"] > 0 and s["cost"]["per_ticket"] == 0.0
    )
    assert s["seconds"]["agent"]["mean"] > 0 and s["pass_hat_k"]["k"] == 1
    assert "ORD-5001" in runs["order-where"]["reply"]
    # the table and summary on stdout, no progress bar when stderr is not a terminal
    assert "resolution rate" in offline["stdout"] and "policy violations      0 actions" in offline["stdout"]
    assert "[#" not in offline["stderr"]


def test_replay_eval_gives_the_same_outcomes_and_passes_the_baseline(offline):
    assert sorted(p.name for p in REPLAY.iterdir()) == sorted(f"{n}.jsonl" for n in by_name(offline["json"]))
    done = shell(README_REPLAY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 regression(s)" in done.stdout
    # same outcome for every ticket as the offline run the fixture was recorded from
    names = set(by_name(offline["json"]))
    rows = {p[0]: p[2] for p in (line.split() for line in done.stdout.splitlines()) if p and p[0] in names}
    assert rows == {n: r["route"] for n, r in by_name(offline["json"]).items()}


def subset(tmp_path: Path, names: set[str]) -> Path:
    path = tmp_path / "subset.jsonl"
    path.write_text(
        "".join(line + "\n" for line in TICKETS.read_text().splitlines() if json.loads(line)["name"] in names)
    )
    return path


# An order question labelled as an escalation: the eval counts it as a missed escalation in every run.
MISLABELLED = {
    "name": "mislabelled",
    "subject": "Where is my parcel?",
    "body": "Any news on ORD-5001?",
    "requester": "jane.smith@example.com",
    "expected_route": "escalate",
    "expected_actions": [],
}


def test_recording_replays_and_the_baseline_gate_fails_a_worse_run(tmp_path):
    tickets = subset(tmp_path, {"order-where", "refund-partial"})
    with tickets.open("a") as handle:
        handle.write(json.dumps(MISLABELLED) + "\n")
    done = support_agent(
        "eval",
        str(tickets),
        "--decisions",
        str(DECISIONS),
        "--record",
        str(tmp_path / "rec"),
        "--json",
        str(tmp_path / "first.json"),
        "--runs",
        "2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["summary"]["pass_hat_k"]["k"] == 2 and first["summary"]["pass_hat_k"]["consistent"] == 3
    # the mislabelled ticket is answered, so missed, in both runs: pass^2 is 2/3
    assert first["summary"]["pass_hat_k"]["mean"] == pytest.approx(2 / 3)
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == [
        "mislabelled.jsonl",
        "order-where.jsonl",
        "refund-partial.jsonl",
    ]
    # a baseline that was better: recall and resolution regress, and the run fails
    better = json.loads(json.dumps(first))
    better["summary"]["escalation"]["all"]["recall"] = 1.0
    better["summary"]["resolution_rate"] += 0.2
    (tmp_path / "better.json").write_text(json.dumps(better))
    done = support_agent(
        "eval",
        str(tickets),
        "--decisions",
        str(DECISIONS),
        "--provider",
        f"replay:{tmp_path / 'rec'}",
        "--baseline",
        str(tmp_path / "better.json"),
    )
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "REGRESSION: escalation recall" in done.stderr and "REGRESSION: resolution rate" in done.stderr


def test_bad_input_is_refused_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"subject": "s", "body": "b", "requester": "x@example.com", "expected_route": "sometimes"}\n'
    )
    done = support_agent("eval", str(bad), timeout=60)
    assert done.returncode == 2 and "expected_route" in done.stderr
    done = support_agent("eval", str(TICKETS), "--provider", "replay:/nonexistent/dir", timeout=60)
    assert done.returncode == 2 and "no such replay folder" in done.stderr
    done = support_agent("eval", str(TICKETS), "--decisions", "sometimes", timeout=60)
    assert done.returncode == 2 and "approve, deny" in done.stderr


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_report_renders_in_headless_chromium(offline):
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    page = offline["html"]
    text = page.read_text()
    assert (
        "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        and "https://" not in text.split("prices as of")[0]
    ), "the page loads nothing from the network"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not any("Uncaught" in line or "Error" in line for line in console), console
    # the inline script ran to its end and caught no error
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None and 'data-ready="1"' in body.group(0) and "data-script-error" not in body.group(0)
    for chart in (
        "route-confusion",
        "category-confusion",
        "cost-histogram",
        "token-histogram",
        "tokens-per-ticket",
    ):
        assert f'id="{chart}"' in dom, chart
    assert dom.count('class="cell"') >= 4 and 'class="seg"' in dom
    for table in ("escalation", "violations", "stages", "tickets"):
        assert f'<table class="sortable" id="{table}"' in dom, table
    assert dom.count("<tr>") > 24
    # the worst misses show their ticket text, escaped
    assert (
        'id="misses"' in dom
        and "refund-policy" in dom
        and "in which cases are subscriptions refundable" in dom
    )


def test_html_report_escapes_hostile_ticket_text():
    from support_agent_local.eval_report import html_report

    hostile = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    run = {
        "run": 0,
        "route": "auto",
        "state": "responded",
        "category": "general",
        "reason": "",
        "actions": [],
        "decisions": [],
        "reply": hostile,
        "slack": [hostile],
        "usage": {"input": 1, "output": 1, "cache_read": 0, "cache_write": 0},
        "models": ["offline"],
        "cost": 0.0,
        "seconds": {"intake": 0.1},
        "violations": [],
        "passed": False,
        "misses": [hostile],
    }
    ticket = {
        "name": hostile,
        "subject": hostile,
        "body": hostile,
        "requester": "x@example.com",
        "expected_route": "escalate",
        "runs": [run],
    }
    summary = {
        "tickets": 1,
        "runs": 1,
        "ticket_runs": 1,
        "resolution_rate": 1.0,
        "over_escalation_rate": None,
        "unfinished": 0,
        "escalation": {},
        "route_confusion": {"labels": [], "counts": {}},
        "category_confusion": {"labels": [], "counts": {}},
        "violations": {
            "unapproved_action": 0,
            "policy_refusal": 0,
            "reply_on_escalated": 0,
            "unaudited_side_effect": 0,
        },
        "tokens": {"input": 1, "output": 1, "cache_read": 0, "cache_write": 0},
        "cache_share": 0.0,
        "cost": {"total": 0.0, "per_ticket": 0.0, "prices_as_of": "2026-11-28", "prices_source": hostile},
        "seconds": {
            k: {"mean": 0.0, "p95": 0.0, "total": 0.0} for k in ("intake", "agent", "model", "approval_path")
        },
        "pass_hat_k": {"k": 1, "mean": 0.0},
    }
    page = html_report(
        {"file": hostile, "provider": "offline", "created": "now", "summary": summary, "tickets": [ticket]}
    )
    assert "<script>document" not in page and "<img" not in page
    assert page.count("<script>") == 1  # only the report's own
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
