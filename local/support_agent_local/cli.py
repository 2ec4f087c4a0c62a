"""`support-agent`: policy checks, audit verification and export, triage, and the local runtime."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from support_agent.rules.audit import AuditEntry, verify, verify_entries
from support_agent.rules.dynamodb import DynamoAuditLog
from support_agent.rules.policy import PolicyError, bound_id, load_policy

Command = Callable[[argparse.Namespace], int]


def _policy_check(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            policy = load_policy(file)
        except PolicyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        approvals = sum(r.requires_approval for r in policy.rules)
        denies = sum(r.effect == "deny" for r in policy.rules)
        print(
            f"{file}: ok — {len(policy.rules)} rules ({denies} deny, {approvals} need approval), "
            f"{policy.budget.max_sessions_per_day} sessions/day, "
            f"{policy.budget.max_tokens_per_session} tokens/session"
        )
    return 1 if failed else 0


def _policy_explain(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    decision = policy.authorize(args.action, args.resource, requester=args.requester)
    who = f" (requester {args.requester})" if args.requester else ""
    print(f"{args.action} on {args.resource}{who}: {decision.describe()}")
    if args.requester is None and policy.binds_requester(args.action):
        print(
            "note: rules with {requester} match only the customer record bound to the ticket's requester; "
            "pass --requester CUSTOMER_ID to see them apply"
        )
    elif args.requester is not None and bound_id(args.requester) is None:
        print(f"note: {args.requester!r} cannot be a bound customer id, so no {{requester}} rule matches it")
    return 0


def _trail(args: argparse.Namespace) -> DynamoAuditLog:
    table = args.table or os.environ.get("AUDIT_TABLE")
    if not table:
        raise SystemExit(
            "error: name the audit table with --table or AUDIT_TABLE (or verify an export with --file)"
        )
    return DynamoAuditLog(table)


def _audit_verify(args: argparse.Namespace) -> int:
    if args.file:
        lines = Path(args.file).read_text().splitlines()
        report = verify_entries(AuditEntry.model_validate_json(line) for line in lines if line.strip())
    else:
        report = verify(_trail(args), args.session)
    for problem in report.problems:
        print(f"TAMPERED {problem}")
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"audit trail {status}: {report.entries} entries in {report.sessions} session(s) verified")
    return 0 if report.ok else 1


def _audit_export(args: argparse.Namespace) -> int:
    for entry in _trail(args).entries(args.session):
        print(entry.model_dump_json())
    return 0


def _triage(args: argparse.Namespace) -> int:
    import csv

    from support_agent.agent.triage import Triage
    from support_agent.config import default_policy_file

    if not args.offline:
        print(
            "error: only --offline triage runs from the CLI (the model classifies inside the agent)",
            file=sys.stderr,
        )
        return 2
    triage = Triage(load_policy(args.policy or default_policy_file()))
    with open(args.file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if args.text_column not in (reader.fieldnames or []):
            print(f"error: {args.file} has no column {args.text_column!r}", file=sys.stderr)
            return 2
        counts = {"auto": 0, "escalate": 0}
        # With a `route` column (auto / escalate; other values are not counted): rows per (expected, got).
        scored: dict[tuple[str, str], int] = {}
        for row in reader:
            result = triage.decide(row[args.text_column])
            counts[result.route] += 1
            if row.get("route") in counts:
                key = (row["route"], result.route)
                scored[key] = scored.get(key, 0) + 1
            out = {
                "route": result.route,
                "category": result.category,
                "matched_rules": result.matched_rules,
                "language": result.classification.language,
                "sentiment": result.classification.sentiment,
            }
            print(
                json.dumps(out)
                if args.jsonl
                else f"{result.route:<9} {result.category:<20} {row[args.text_column]}"
            )
    print(f"{counts['auto']} auto, {counts['escalate']} escalate", file=sys.stderr)
    for expected, label in (("escalate", "escalation recall"), ("auto", "auto rate")):
        total = scored.get((expected, "auto"), 0) + scored.get((expected, "escalate"), 0)
        if total:
            hit = scored.get((expected, expected), 0)
            print(f"{args.file}: {label} {hit / total:.4f} ({hit}/{total})", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from support_agent_local.demo import BUNDLED, load_tickets, run_demo

    tickets = load_tickets(Path(args.tickets) if args.tickets else BUNDLED)
    interactive = args.decisions == "ask" and sys.stdin.isatty()
    runs = run_demo(tickets, interactive, as_json=args.json, backends=args.backends)
    lost = [r for r in runs if r.outcome not in {"responded", "handoff", "closed"}]
    return 1 if lost else 0


def _eval(args: argparse.Namespace) -> int:
    from support_agent_local import eval as ev
    from support_agent_local import eval_report

    try:
        tickets = ev.load_labelled(Path(args.file))
        options = ev.EvalOptions(
            provider=args.provider,
            model=args.model,
            decisions=ev.DecisionRules.parse(args.decisions),
            runs=args.runs,
            record=Path(args.record) if args.record else None,
        )
        ev.provider_parameters(options.provider, options.model)  # a bad choice fails before the stack starts
        baseline = json.loads(Path(args.baseline).read_text(encoding="utf-8")) if args.baseline else None
    except ev.EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: baseline {args.baseline}: {exc}", file=sys.stderr)
        return 2
    if args.runs < 1:
        print("error: --runs must be at least 1", file=sys.stderr)
        return 2
    progress = eval_report.progress_bar(sys.stderr) if sys.stderr.isatty() else None
    results = ev.run_eval(tickets, options, progress)
    data = ev.report(args.file, options, tickets, results)
    eval_report.terminal(data, sys.stdout)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"JSON result: {args.json}")
    if args.html:
        Path(args.html).write_text(eval_report.html_report(data), encoding="utf-8")
        print(f"HTML report: {args.html}")
    failed = 0
    unapproved = data["summary"]["violations"]["unapproved_action"]
    if unapproved:
        print(f"FAIL: {unapproved} action(s) executed without a recorded approval", file=sys.stderr)
        failed = 1
    if baseline is not None:
        gate = ev.Gate(
            args.max_recall_drop, args.max_resolution_drop, args.max_cost_rise, args.max_new_violations
        )
        found = ev.regressions(baseline, data, gate)
        for line in found:
            print(f"REGRESSION: {line}", file=sys.stderr)
        print(f"baseline {args.baseline}: {len(found)} regression(s)")
        failed = failed or (1 if found else 0)
    return failed


def _invoke(args: argparse.Namespace) -> int:
    from support_agent_local import events
    from support_agent_local.emulator import EmbeddedAws

    event = events.sample(args.event)
    if event.function != args.function:
        print(f"error: {args.event} is an event for {event.function}, not {args.function}", file=sys.stderr)
        return 2
    with EmbeddedAws() as stack:
        response = events.invoke_sample(stack, args.event)
    print(json.dumps(response, indent=2, default=str))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from support_agent_local.serve import serve

    return serve(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="support-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    policy = sub.add_parser("policy", help="check and explain policy files").add_subparsers(
        dest="sub", required=True
    )
    check = policy.add_parser("check", help="validate policy files; exit 1 with the file, line and reason")
    check.add_argument("files", nargs="+")
    check.set_defaults(run=_policy_check)
    explain = policy.add_parser(
        "explain", help="print the decision for ACTION on RESOURCE and the rule behind it"
    )
    explain.add_argument("file")
    explain.add_argument("action")
    explain.add_argument("resource")
    explain.add_argument(
        "--requester",
        metavar="CUSTOMER_ID",
        help="the customer id bound to the ticket's requester, which {requester} in a rule stands for",
    )
    explain.set_defaults(run=_policy_explain)

    audit = sub.add_parser("audit", help="verify and export the audit trail").add_subparsers(
        dest="sub", required=True
    )
    verify = audit.add_parser(
        "verify", help="recompute every hash chain; exit 1 on a changed, removed or reordered entry"
    )
    verify.add_argument("--table", help="audit table name (default: $AUDIT_TABLE)")
    verify.add_argument("--session", help="only this session")
    verify.add_argument("--file", help="verify an exported JSON-lines file instead of the table")
    verify.set_defaults(run=_audit_verify)
    export = audit.add_parser("export", help="print one session's entries as JSON lines")
    export.add_argument("--table", help="audit table name (default: $AUDIT_TABLE)")
    export.add_argument("--session", required=True)
    export.set_defaults(run=_audit_export)

    triage = sub.add_parser(
        "triage", help="route each row of a CSV file (auto or escalate) with the guard rules"
    )
    triage.add_argument("file")
    triage.add_argument("--text-column", default="text")
    triage.add_argument("--policy", help="policy file (default: policies/acme-support.yaml)")
    triage.add_argument("--offline", action="store_true", help="guard rules and the offline classifier only")
    triage.add_argument("--jsonl", action="store_true", help="one JSON object per row, in input order")
    triage.set_defaults(run=_triage)

    demo = sub.add_parser(
        "demo", help="run sample tickets through the whole system on the embedded emulation"
    )
    demo.add_argument(
        "--decisions", choices=["ask", "auto"], default="ask", help="ask in a terminal, or scripted"
    )
    demo.add_argument("--tickets", help="CSV or JSON lines: subject, body, requester_email[, customer_id]")
    demo.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    demo.add_argument(
        "--backends",
        choices=["embedded", "real"],
        default="embedded",
        help="embedded sample systems, or Zendesk (stand-in), Stripe (localstripe), Cognito (moto), customer API",
    )
    demo.set_defaults(run=_demo)

    ev = sub.add_parser(
        "eval", help="labelled tickets through the whole system: resolution, escalation, policy, cost, time"
    )
    ev.add_argument(
        "file",
        help="CSV or JSON lines: subject, body, requester, expected_route[, expected_category, expected_actions]",
    )
    ev.add_argument(
        "--provider",
        default="offline",
        help="offline (default), anthropic, bedrock, or replay:DIR (recordings per ticket)",
    )
    ev.add_argument("--model", help="model id for anthropic (ModelId) or bedrock (BedrockModelId)")
    ev.add_argument(
        "--decisions",
        default="approve",
        help="what people decide: approve, deny, reply, partial:N%%, partial:N (minor units), or a rules .yaml",
    )
    ev.add_argument("--runs", type=int, default=1, help="run every ticket k times and report pass^k")
    ev.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    ev.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    ev.add_argument("--record", metavar="DIR", help="record every model response to DIR for replay:DIR")
    ev.add_argument("--baseline", metavar="FILE", help="an earlier --json result: exit 1 past the thresholds")
    ev.add_argument(
        "--max-recall-drop", type=float, default=0.02, help="allowed escalation recall drop (0.02)"
    )
    ev.add_argument(
        "--max-resolution-drop", type=float, default=0.05, help="allowed resolution rate drop (0.05)"
    )
    ev.add_argument(
        "--max-cost-rise", type=float, default=0.10, help="allowed relative cost rise per ticket (0.10)"
    )
    ev.add_argument("--max-new-violations", type=int, default=0, help="allowed new policy violations (0)")
    ev.set_defaults(run=_eval)

    invoke = sub.add_parser(
        "invoke", help="run one function's handler on a sample event, like `sam local invoke -e`"
    )
    invoke.add_argument("function", choices=["intake", "agent_step", "notifier", "slack_interaction"])
    invoke.add_argument("--event", required=True, help="a file in events/ (listed in events/manifest.json)")
    invoke.set_defaults(run=_invoke)

    serve = sub.add_parser(
        "serve", help="the HTTP API on 127.0.0.1 with queues and the state machine running"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    serve.set_defaults(run=_serve)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
