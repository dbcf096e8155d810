"""shredvault from Python against what a Python team would write by hand:
sqlite3 plus AES-256-GCM from `cryptography`, one key per subject in a
table, erasure = delete the subject's rows and its key.

Both sides store the same 1 KiB records for the same subjects, read them
back for a purpose, scan them, and erase a subject holding 10,000 records.
The hand-written baseline checks no purpose, keeps no audit log and
rotates nothing: it is the floor a vault has to beat, not its equal.

Usage: python python/bench/compare.py [--records N]
Needs: pip install cryptography (and shredvault).
"""

import argparse
import os
import secrets
import sqlite3
import tempfile
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import shredvault as sv

POLICY = os.path.join(os.path.dirname(__file__), "..", "..", "example-policy.toml")


class HandWritten:
    """sqlite3 + AES-GCM, a key per subject: the usual do-it-yourself vault."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("pragma journal_mode=wal")
        self.db.execute("pragma synchronous=normal")
        self.db.execute("create table keys (subject text primary key, key blob)")
        self.db.execute(
            "create table records (id text primary key, subject text, category text, nonce blob, data blob)"
        )
        self.db.execute("create index by_subject on records(subject)")
        self.db.execute("create index by_category on records(category)")
        self.keys = {}

    def create_subject(self):
        s = secrets.token_hex(16)
        key = AESGCM.generate_key(bit_length=256)
        self.db.execute("insert into keys values (?, ?)", (s, key))
        self.keys[s] = AESGCM(key)
        return s

    def put(self, subject, category, data):
        r = secrets.token_hex(16)
        nonce = os.urandom(12)
        ct = self.keys[subject].encrypt(nonce, data, r.encode())
        self.db.execute("insert into records values (?, ?, ?, ?, ?)", (r, subject, category, nonce, ct))
        return r

    def get(self, record):
        subject, nonce, ct = self.db.execute(
            "select subject, nonce, data from records where id = ?", (record,)
        ).fetchone()
        return self.keys[subject].decrypt(nonce, ct, record.encode())

    def scan(self, category):
        for r, subject, nonce, ct in self.db.execute(
            "select id, subject, nonce, data from records where category = ?", (category,)
        ):
            yield self.keys[subject].decrypt(nonce, ct, r.encode())

    def erase(self, subject):
        self.db.execute("begin")
        self.db.execute("delete from records where subject = ?", (subject,))
        self.db.execute("delete from keys where subject = ?", (subject,))
        self.db.execute("commit")
        del self.keys[subject]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(n):
    data = [(b"%010d" % i) * 103 for i in range(n)]  # 1030 bytes
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        hand = HandWritten(os.path.join(tmp, "hand.db"))
        v = sv.Vault(os.path.join(tmp, "vault"), root_key=secrets.token_bytes(32), policy=POLICY, durability="batched")
        for name, side in (("sqlite3+cryptography", hand), ("shredvault", v)):
            subjects = [side.create_subject() for _ in range(100)]
            if side is v:
                put = lambda i: v.put(subjects[i % 100], "account", data[i])
                get = lambda r: v.get(r, "billing").data
                scan = lambda: sum(1 for _ in v.scan("account", "billing"))
            else:
                put = lambda i: hand.put(subjects[i % 100], "account", data[i])
                get = lambda r: hand.get(r)
                scan = lambda: sum(1 for _ in hand.scan("account"))
            t, ids = timed(lambda: [put(i) for i in range(n)])
            out[(name, "put")] = n / t
            t, _ = timed(lambda: [get(r) for r in ids])
            out[(name, "get")] = n / t
            t, count = timed(scan)
            assert count == n
            out[(name, "scan")] = n / t
            big = side.create_subject()
            for i in range(10_000):
                side.put(big, "job_application", data[i % n]) if side is v else hand.put(big, "job_application", data[i % n])
            if side is v:
                v.flush()
                t, _ = timed(lambda: v.erase_subject(big))
            else:
                t, _ = timed(lambda: hand.erase(big))
            out[(name, "erase 10,000 records (ms)")] = t * 1000
        v.close()
    print(f"{'operation':<30} {'sqlite3+cryptography':>22} {'shredvault':>14} {'ratio':>8}")
    for op in ("put", "get", "scan"):
        a, b = out[("sqlite3+cryptography", op)], out[("shredvault", op)]
        print(f"{op + ' (records/s)':<30} {a:>22.0f} {b:>14.0f} {b / a:>8.2f}")
    op = "erase 10,000 records (ms)"
    a, b = out[("sqlite3+cryptography", op)], out[("shredvault", op)]
    print(f"{op:<30} {a:>22.2f} {b:>14.2f} {a / b:>8.2f}x faster")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    run(parser.parse_args().records)
