"""A Python job on a vault that a server shares with other processes (a C
billing service, say): it connects by URL instead of opening the
directory, and uses the same methods. What its client may do is the
server's clients.toml's to say; outside it, ForbiddenError.

Usage: python examples/python/served.py URL TOKEN
       (URL: unix:///abs/path.sock, from `shredvault serve --listen unix:...`)
"""

import sys

import shredvault as sv


def main(url: str, token: str) -> None:
    with sv.connect(url, token=token) as vault:
        kept = []
        for i in range(100):
            s = vault.create_subject(identifiers={"email": f"served{i}@example.com"})
            r = vault.put(s, "account", {"customer": i})
            kept.append((s, r, i))
        for s, r, i in kept:
            assert vault.get(r, purpose="billing").json() == {"customer": i}
            assert vault.find_subject("email", f"served{i}@example.com") == s
        s, r, _ = kept[0]
        receipt = vault.erase_subject(s)
        try:
            vault.get(r, purpose="billing")
            raise SystemExit("an erased record read back")
        except (sv.ErasedError, sv.RestrictedError):
            pass
        print(
            f"served job: {len(kept)} subjects stored and read back through {url}; "
            f"one erased (receipt for {receipt['subject']})"
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
