"""What proves the audit trail beyond its own chains: signed digests of every chain's head, signed seals
on exports, and the verification that compares chains with both and with the heads on session records.

The model is CloudTrail's log-file integrity validation. Hash chains and MACs show a changed entry; they
cannot show entries that are simply gone (a cut tail, a deleted session), nor stop someone who can seal
new entries from rewriting old ones. So:

- a **digest** lists the head (seq, hash, MAC) of every chain that changed since the previous digest,
  names the previous digest's fingerprint, and is signed with a key the functions cannot use. An operator
  or a schedule writes one per run of `support-agent audit digest`, up to `per` heads each, into the audit
  table (partition `#digest`) and optionally into a file kept elsewhere. Every head a digest names must
  still be in its chain; a digest missing from the numbering, or one whose signature fails, is reported;
- a **seal** ends every export: the number of entries, the sessions, each one's head, signed. A file
  whose tail was cut, that gained an entry, lost a session, or whose entries were rewritten fails it.

What stays undetectable is what happens between the last digest and the next one when the attacker can
also rewrite session records: digest often (hourly, like CloudTrail) to keep that window short.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from support_agent import clock
from support_agent.rules.audit import (
    GENESIS,
    Anchor,
    AuditEntry,
    Head,
    Problem,
    ProvableLog,
    VerifyReport,
    verify_chains,
)
from support_agent.rules.audit_keys import MacKey, Signer

# Digests live in the audit table under this partition key (no session id contains "#").
DIGESTS = "#digest"
EXPORT = "export"
DIGEST_PER = 1000  # heads per digest: about 150 bytes each, well inside DynamoDB's 400 KB per item
_DIGEST = b"support-agent/audit-digest/v1\n"
_SEAL = b"support-agent/audit-seal/v1\n"


def _canonical(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _signed_by(message: bytes, signature: str, signer: Signer) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return bool(raw) and signer.verify(message, raw)


class Digest(BaseModel):
    """Signed list of chain heads; `previous` is the fingerprint of the digest before it."""

    model_config = ConfigDict(defer_build=True)

    number: int
    time: str
    previous: str
    heads: dict[str, Head]
    key_id: str
    signature: str = ""

    def message(self) -> bytes:
        """What the signature covers: a statement of the SHA-256 of everything but the signature."""
        body = _canonical(self.model_dump(mode="json", exclude={"signature"}))
        return _DIGEST + hashlib.sha256(body).hexdigest().encode()

    def fingerprint(self) -> str:
        """SHA-256 of the whole digest, signature included (the next digest names it)."""
        return hashlib.sha256(_canonical(self.model_dump(mode="json"))).hexdigest()


class Seal(BaseModel):
    """The last line of an export: how many entries, which sessions, each one's head; signed."""

    model_config = ConfigDict(defer_build=True)

    count: int
    sessions: list[str]
    heads: dict[str, Head]
    time: str
    source: str
    key_id: str
    signature: str = ""

    def message(self) -> bytes:
        body = _canonical(self.model_dump(mode="json", exclude={"signature"}))
        return _SEAL + hashlib.sha256(body).hexdigest().encode()


# --- digests ------------------------------------------------------------------------------------------


def sign_digests(
    heads: dict[str, Head], previous: Sequence[Digest], signer: Signer, per: int = DIGEST_PER
) -> list[Digest]:
    """The digests that follow `previous`: each head not pinned as it is now, `per` to a digest (one
    digest with no heads when nothing changed, which still shows the trail was checked then)."""
    known: dict[str, Head] = {}
    for digest in previous:
        known.update(digest.heads)
    changed = sorted((sid, head) for sid, head in heads.items() if known.get(sid) != head)
    chunks = [changed[i : i + per] for i in range(0, len(changed), per)] or [[]]
    number = previous[-1].number + 1 if previous else 1
    link = previous[-1].fingerprint() if previous else GENESIS
    out = []
    for chunk in chunks:
        digest = Digest(
            number=number, time=clock.iso(), previous=link, heads=dict(chunk), key_id=signer.key_id
        )
        digest.signature = _b64(signer.sign(digest.message()))
        out.append(digest)
        number, link = number + 1, digest.fingerprint()
    return out


def check_digests(
    digests: Sequence[Digest], signer: Signer, external: Sequence[Digest] = ()
) -> tuple[dict[str, list[Anchor]], list[Problem]]:
    """The heads pinned by every valid digest, and what is wrong with the digests themselves.

    `external`: copies kept outside the table (files): each must be in the table as it is in the copy.
    """
    problems: list[Problem] = []
    by_number = {d.number: d for d in digests}
    for copy in external:
        if not _signed_by(copy.message(), copy.signature, signer):
            problems.append(Problem(DIGESTS, copy.number, "digest file: signature invalid"))
            continue
        stored = by_number.get(copy.number)
        if stored is None:
            problems.append(Problem(DIGESTS, copy.number, "digest deleted from the table (a copy exists)"))
        elif stored.fingerprint() != copy.fingerprint():
            problems.append(Problem(DIGESTS, copy.number, "digest in the table differs from its copy"))
        by_number[copy.number] = copy
    pinned: dict[str, list[Anchor]] = {}
    link: str | None = GENESIS
    for number in range(1, max(by_number, default=0) + 1):
        digest = by_number.get(number)
        if digest is None:
            problems.append(Problem(DIGESTS, number, "digest missing: deleted"))
            link = None
            continue
        if not _signed_by(digest.message(), digest.signature, signer):
            problems.append(Problem(DIGESTS, number, "digest signature invalid: forged or changed"))
            link = None
            continue
        if link is not None and digest.previous != link:
            problems.append(Problem(DIGESTS, number, "digest chain broken: the previous digest was changed"))
        for session_id, head in digest.heads.items():
            pinned.setdefault(session_id, []).append(Anchor(f"digest #{number}", head))
        link = digest.fingerprint()
    return pinned, problems


def verify_log(
    log: ProvableLog,
    session_id: str | None = None,
    *,
    signer: Signer | None = None,
    external_digests: Sequence[Digest] = (),
) -> VerifyReport:
    """Every chain (or one) against its MACs, the session records' heads and, with `signer`, the digests."""
    entries = log.entries(session_id) if session_id else list(log.all_entries())
    anchors: dict[str, list[Anchor]] = {}
    for sid, head in log.anchors(session_id).items():
        anchors.setdefault(sid, []).append(Anchor("the session record", head))
    problems: list[Problem] = []
    if signer is not None:
        pinned, problems = check_digests(log.digests(), signer, external_digests)
        for sid, found in pinned.items():
            if session_id is None or sid == session_id:
                anchors.setdefault(sid, []).extend(found)
    report = verify_chains(entries, key=log.key, anchors=anchors)
    report.problems[:0] = problems
    return report


def digest_log(log: ProvableLog, signer: Signer, per: int = DIGEST_PER) -> tuple[list[Digest], VerifyReport]:
    """Verify the whole trail, then write the digests that pin every head that verified.

    A session with a problem is left out (and stays in the report); a broken digest chain stops it all,
    since a new digest would vouch for it.
    """
    if log.key is None:
        raise ValueError("a digest needs the MAC key: it vouches only for chains whose MACs were checked")
    report = verify_log(log, signer=signer)
    if any(p.session_id == DIGESTS for p in report.problems):
        return [], report
    bad = {p.session_id for p in report.problems}
    heads = {sid: head for sid, head in report.heads.items() if sid not in bad}
    written = sign_digests(heads, log.digests(), signer, per)
    for digest in written:
        log.put_digest(digest)
    return written, report


# --- exports ------------------------------------------------------------------------------------------


def export_lines(entries: Iterable[AuditEntry], signer: Signer, source: str) -> list[str]:
    """Entries as JSON lines, then the signed seal."""
    ordered = sorted(entries, key=lambda e: (e.session_id, e.seq))
    heads = {e.session_id: e.head for e in ordered}  # the last entry of each session wins
    seal = Seal(
        count=len(ordered),
        sessions=sorted(heads),
        heads=heads,
        time=clock.iso(),
        source=source,
        key_id=signer.key_id,
    )
    seal.signature = _b64(signer.sign(seal.message()))
    return [e.model_dump_json() for e in ordered] + [json.dumps({"seal": seal.model_dump(mode="json")})]


def verify_export(lines: Iterable[str], *, key: MacKey | None, signer: Signer) -> VerifyReport:
    """An exported file: its seal's signature, count and sessions, each chain ending at the sealed head,
    and (with `key`) every MAC."""
    entries: list[AuditEntry] = []
    seal: Seal | None = None
    problems: list[Problem] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "seal" in data:
                if seal is not None:
                    problems.append(Problem(EXPORT, None, f"line {number}: a second seal"))
                seal = Seal.model_validate(data["seal"])
                continue
            entry = AuditEntry.model_validate(data)
        except ValueError:
            problems.append(Problem(EXPORT, None, f"line {number} is neither an entry nor a seal"))
            continue
        if seal is not None:
            problems.append(Problem(entry.session_id, entry.seq, "entry after the seal: appended"))
        entries.append(entry)
    anchors: dict[str, list[Anchor]] = {}
    if seal is None:
        problems.append(Problem(EXPORT, None, "no seal: the export was cut or never sealed"))
    elif not _signed_by(seal.message(), seal.signature, signer):
        problems.append(Problem(EXPORT, None, "seal signature invalid: changed, or not made with the key"))
    else:
        if seal.count != len(entries):
            problems.append(
                Problem(EXPORT, None, f"the seal counts {seal.count} entries, the file holds {len(entries)}")
            )
        if sorted(seal.heads) != seal.sessions:
            problems.append(Problem(EXPORT, None, "the seal's sessions and heads disagree"))
        for sid in sorted({e.session_id for e in entries} - set(seal.sessions)):
            problems.append(Problem(sid, None, "session not in the seal: added after sealing"))
        anchors = {sid: [Anchor("the seal", head, exact=True)] for sid, head in seal.heads.items()}
    report = verify_chains(entries, key=key, anchors=anchors)
    report.problems[:0] = problems
    return report
