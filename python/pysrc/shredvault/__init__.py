"""shredvault: an embedded privacy vault.

Personal records are encrypted per data subject; destroying a key is how
personal data is erased (on an erasure request, when a retention period
ends, when consent is withdrawn). Every read names a purpose, which the
vault's policy checks.

    import shredvault as sv

    with sv.Vault("path/to/vault", root_key=key32, policy="policy.toml") as v:
        s = v.create_subject(identifiers={"email": "alice@example.com"})
        r = v.put(s, "account", {"name": "Alice"})
        print(v.get(r, purpose="billing").json())
        receipt = v.erase_subject(s)
"""

from ._shredvault import (
    CorruptError,
    ErasedError,
    ExpiredError,
    ForbiddenError,
    InternalError,
    InvalidArgumentError,
    IoError,
    LegalHoldError,
    LockedError,
    NotFoundError,
    PolicyError,
    PurposeDeniedError,
    Record,
    RecordInfo,
    RestrictedError,
    Scan,
    Vault,
    VaultError,
    WrongKeyError,
    __version__,
    connect,
    verify_ledger,
    verify_receipt,
)

__all__ = [
    "CorruptError",
    "ErasedError",
    "ExpiredError",
    "ForbiddenError",
    "InternalError",
    "InvalidArgumentError",
    "IoError",
    "LegalHoldError",
    "LockedError",
    "NotFoundError",
    "PolicyError",
    "PurposeDeniedError",
    "Record",
    "RecordInfo",
    "RestrictedError",
    "Scan",
    "Vault",
    "VaultError",
    "WrongKeyError",
    "__version__",
    "connect",
    "verify_ledger",
    "verify_receipt",
]
