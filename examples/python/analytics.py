"""An analytics script over shredvault's scan: counts logins per country
from the usage logs, for the "security" purpose.

Restricted subjects and subjects who opted out of sale are left out by the
vault itself (the second count, for a sale purpose, shows it), so the
script needs no list of exclusions of its own.

Usage: python examples/python/analytics.py VAULT_DIR
"""

import collections
import pathlib
import secrets
import sys

import shredvault as sv

POLICY = pathlib.Path(__file__).resolve().parents[2] / "example-policy.toml"


def main(path: str) -> None:
    key = secrets.token_bytes(32)  # a real service gets this from its KMS
    with sv.Vault(path, root_key=key, policy=POLICY) as vault:
        people = []
        for i, country in enumerate(["FR", "FR", "DE", "US", "US", "US"]):
            s = vault.create_subject(identifiers={"email": f"user{i}@example.com"})
            vault.put(s, "usage_log", {"event": "login", "country": country})
            vault.give_consent(s, "marketing", 0)
            vault.give_consent(s, "sale", 0)
            vault.put(s, "marketing_contact", {"email": f"user{i}@example.com"})
            people.append(s)
        vault.set_restricted(people[0], True)  # asked to restrict processing
        vault.set_opt_out_of_sale(people[3], True)  # opted out of sale

        logins = collections.Counter(r.json()["country"] for r in vault.scan("usage_log", "security"))
        print("logins by country (security):", dict(sorted(logins.items())))
        assert sum(logins.values()) == 5, "the restricted subject is left out"

        sellable = [r.json()["email"] for r in vault.scan("marketing_contact", "sale")]
        print("contacts that may be shared (sale):", len(sellable))
        assert len(sellable) == 4, "restricted and opted-out subjects are left out"
        assert "user3@example.com" not in sellable


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
