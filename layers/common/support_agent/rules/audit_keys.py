"""The keys behind the audit trail, used without ever being read: a MAC key and a signing key in KMS.

- The **MAC key** (KMS HMAC_256, `GENERATE_VERIFY_MAC`) seals the head of each write to a chain and turns
  e-mail addresses into pseudonyms. The functions may call `GenerateMac` only; operators `VerifyMac`.
  The key material never leaves KMS, so nobody can compute a seal offline, and every seal made is a
  `GenerateMac` call in CloudTrail with the caller's identity.
- The **signing key** (KMS ECC_NIST_P256, `SIGN_VERIFY`) signs the periodic digests of every chain's head
  and the seal at the end of an export. Only the operator's digest writer may `Sign`; the functions may
  not, so a function (or its stolen credentials) that can seal new entries still cannot rewrite what a
  digest already pins. Anyone allowed `Verify` (or holding the public key) can check a digest.

`LocalMacKey` and `LocalSigner` do the same with a key in memory, for the in-memory fakes and tests only.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Final, Protocol

from support_agent import aws

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

MAC_ALGORITHM: Final = "HMAC_SHA_256"
SIGNING_ALGORITHM: Final = "ECDSA_SHA_256"


class MacKey(Protocol):
    """A MAC key that is used, never read."""

    key_id: str

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA-256 of `message` (KMS GenerateMac)."""
        ...

    def verify(self, message: bytes, mac: bytes) -> bool:
        """True when `mac` is the MAC of `message` (KMS VerifyMac)."""
        ...


class Signer(Protocol):
    """A signing key that is used, never read."""

    key_id: str

    def sign(self, message: bytes) -> bytes:
        """Signature of `message` (KMS Sign)."""
        ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is a signature of `message` by this key (KMS Verify)."""
        ...


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class _KmsKey:
    """A KMS key by id, with an injected client or the shared one."""

    def __init__(self, key_id: str, client: KMSClient | None = None) -> None:
        self.key_id = key_id
        self._client = client

    @property
    def client(self) -> KMSClient:
        return self._client or aws.kms()


class KmsMacKey(_KmsKey):
    """MacKey over a KMS HMAC key."""

    def mac(self, message: bytes) -> bytes:
        resp = self.client.generate_mac(KeyId=self.key_id, Message=message, MacAlgorithm=MAC_ALGORITHM)
        return resp["Mac"]

    def verify(self, message: bytes, mac: bytes) -> bool:
        try:
            resp = self.client.verify_mac(
                KeyId=self.key_id, Message=message, Mac=mac, MacAlgorithm=MAC_ALGORITHM
            )
        except Exception as exc:
            if _error_code(exc) == "KMSInvalidMacException":
                return False
            raise
        return bool(resp["MacValid"])


class KmsSigner(_KmsKey):
    """Signer over a KMS asymmetric key (ECC_NIST_P256). Messages are short statements of a SHA-256 digest,
    signed RAW, so a signature can also be checked offline with the key's public half."""

    def sign(self, message: bytes) -> bytes:
        resp = self.client.sign(
            KeyId=self.key_id, Message=message, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
        )
        return resp["Signature"]

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            resp = self.client.verify(
                KeyId=self.key_id,
                Message=message,
                MessageType="RAW",
                Signature=signature,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except Exception as exc:
            if _error_code(exc) == "KMSInvalidSignatureException":
                return False
            raise
        return bool(resp["SignatureValid"])


class LocalMacKey:
    """MacKey with the key in memory (in-memory fakes and tests; never deployed)."""

    def __init__(self, secret: bytes = b"local-audit-mac-key") -> None:
        self._secret = secret
        self.key_id = "local-mac-" + hashlib.sha256(secret).hexdigest()[:12]

    def mac(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def verify(self, message: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self.mac(message), mac)


class LocalSigner:
    """Signer with a key in memory (tests only: symmetric, so whoever verifies could also sign)."""

    def __init__(self, secret: bytes = b"local-audit-signing-key") -> None:
        self._secret = secret
        self.key_id = "local-signer-" + hashlib.sha256(secret).hexdigest()[:12]

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._secret, b"sign\x00" + message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)
