"""`support-agent`: policy checks, audit verification and export, triage, and the local runtime."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from support_agent.rules.audit import VerifyReport
from support_agent.rules.audit_keys import KmsMacKey, KmsSigner
from support_agent.rules.dynamodb import DynamoAuditLog
from support_agent.rules.policy import PolicyError, bound_id, load_policy

from support_agent_local.template import PROJECT_ROOT

if TYPE_CHECKING:
    from support_agent.rules.audit_proof import Digest

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


def _option(args: argparse.Namespace, name: str, variable: str, what: str) -> str:
    value = getattr(args, name, None) or os.environ.get(variable)
    if not value:
        flag = "--" + name.replace("_", "-")
        raise SystemExit(f"error: {what}: give {flag} or set {variable}")
    return str(value)


def _mac_key(args: argparse.Namespace) -> KmsMacKey:
    return KmsMacKey(
        _option(
            args, "mac_key", "AUDIT_MAC_KEY_ID", "the MAC key checks every seal (stack output AuditMacKeyId)"
        )
    )


def _signer(args: argparse.Namespace) -> KmsSigner:
    what = "the signing key signs and checks digests and seals (stack output AuditSigningKeyId)"
    return KmsSigner(_option(args, "signing_key", "AUDIT_SIGNING_KEY_ID", what))


def _trail(args: argparse.Namespace) -> DynamoAuditLog:
    table = args.table or os.environ.get("AUDIT_TABLE")
    if not table:
        raise SystemExit(
            "error: name the audit table with --table or AUDIT_TABLE (or verify an export with --file)"
        )
    sessions = args.sessions_table or os.environ.get("SESSIONS_TABLE")
    if not sessions:
        print(
            "warning: no --sessions-table / SESSIONS_TABLE: heads on session records are not compared",
            file=sys.stderr,
        )
    return DynamoAuditLog(table, key=_mac_key(args), sessions_table=sessions)


def _print_report(report: VerifyReport, what: str) -> int:
    for problem in report.problems:
        print(f"TAMPERED {problem}")
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"{what} {status}: {report.entries} entries in {report.sessions} session(s) verified "
        f"(MACs {'checked' if report.macs_checked else 'NOT checked'}, {report.anchors_checked} anchored heads compared)"
    )
    return 0 if report.ok else 1


def _audit_verify(args: argparse.Namespace) -> int:
    from support_agent.rules.audit_proof import verify_export, verify_log

    if args.file:
        lines = Path(args.file).read_text().splitlines()
        report = verify_export(lines, key=_mac_key(args), signer=_signer(args))
        return _print_report(report, f"audit export {args.file}")
    external = [d for file in args.digest_file or [] for d in _read_digests(Path(file))]
    report = verify_log(_trail(args), args.session, signer=_signer(args), external_digests=external)
    return _print_report(report, "audit trail")


def _read_digests(path: Path) -> list[Digest]:
    from support_agent.rules.audit_proof import Digest

    return [Digest.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def _audit_export(args: argparse.Namespace) -> int:
    """Entries as JSON lines, sealed; a trail that does not verify is not sealed (nor written)."""
    from support_agent.rules.audit_proof import export_lines, verify_log

    trail, signer = _trail(args), _signer(args)
    report = verify_log(trail, args.session, signer=signer)
    if not report.ok:
        for problem in report.problems:
            print(f"TAMPERED {problem}", file=sys.stderr)
        print("error: the trail does not verify; nothing exported", file=sys.stderr)
        return 1
    entries = trail.entries(args.session) if args.session else list(trail.all_entries())
    for line in export_lines(entries, signer, source=trail.table):
        print(line)
    return 0


def _heads_per_digest(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 2000:  # 2,000 heads of about 150 bytes stay well inside DynamoDB's 400 KB item
        raise argparse.ArgumentTypeError("give 1 to 2000")
    return value


def _audit_digest(args: argparse.Namespace) -> int:
    """Verify the whole trail, then sign and store a digest of every chain's head (and copy it to --out)."""
    from support_agent.rules.audit_proof import digest_log

    trail = _trail(args)
    written, report = digest_log(trail, _signer(args), args.per)
    for problem in report.problems:
        print(f"TAMPERED {problem} (left out of the digest)")
    if args.out and written:
        with Path(args.out).open("a", encoding="utf-8") as handle:
            for digest in written:
                handle.write(digest.model_dump_json() + "\n")
    for digest in written:
        print(f"digest #{digest.number}: {len(digest.heads)} head(s) signed at {digest.time}")
    if not written:
        print("error: the digest chain itself does not verify; no digest written", file=sys.stderr)
    return 0 if report.ok and written else 1


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

    def trail_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--table", help="audit table name (default: $AUDIT_TABLE)")
        command.add_argument(
            "--sessions-table", help="sessions table, whose records keep each chain's head ($SESSIONS_TABLE)"
        )
        command.add_argument("--mac-key", help="KMS key that seals chains (default: $AUDIT_MAC_KEY_ID)")
        command.add_argument(
            "--signing-key", help="KMS key of digests and seals (default: $AUDIT_SIGNING_KEY_ID)"
        )

    verify = audit.add_parser(
        "verify",
        help="check every chain, MAC, session head and digest (or an export's seal); exit 1 on tampering",
    )
    trail_options(verify)
    verify.add_argument("--session", help="only this session")
    verify.add_argument("--file", help="verify an exported JSON-lines file (its seal) instead of the table")
    verify.add_argument(
        "--digest-file", action="append", help="digests kept outside the table (from `audit digest --out`)"
    )
    verify.set_defaults(run=_audit_verify)
    export = audit.add_parser(
        "export", help="print entries as JSON lines ending in a signed seal (a trail that fails verify: none)"
    )
    trail_options(export)
    export.add_argument("--session", help="only this session (default: every session)")
    export.set_defaults(run=_audit_export)
    digest = audit.add_parser(
        "digest", help="verify the trail, then sign and store a digest of every chain's head"
    )
    trail_options(digest)
    digest.add_argument("--per", type=_heads_per_digest, default=1000, help="heads per digest (1-2000)")
    digest.add_argument("--out", help="also append the digests to this file (keep it outside AWS)")
    digest.set_defaults(run=_audit_digest)

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
    functions = sorted(p.parent.name for p in (PROJECT_ROOT / "functions").glob("*/app.py"))
    invoke.add_argument("function", choices=functions)
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
