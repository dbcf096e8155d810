"""sv.connect: a script using a vault served by `shredvault serve`, beside
other processes: the same methods and exceptions as sv.Vault."""

import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import pytest

import shredvault as sv
from conftest import KEY, POLICY, ROOT

CLI = pathlib.Path(os.environ.get("SV_CLI", ROOT / "target" / "release" / "shredvault"))
CLIENTS = ROOT / "tests" / "clients.toml"


@pytest.fixture
def served(tmp_path):
    """A vault served on a Unix socket; yields its URL."""
    assert CLI.exists(), f"{CLI} is missing: build it first (cargo build --release -p shredvault-cli)"
    vault = tmp_path / "vault"
    sv.Vault(vault, root_key=KEY, policy=POLICY).close()
    sock = tmp_path / "sv.sock"
    env = dict(os.environ, SHREDVAULT_ROOT_KEY=KEY.hex())
    server = subprocess.Popen(
        [str(CLI), "serve", str(vault), "--listen", f"unix:{sock}", "--clients", str(CLIENTS)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 30
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                server.wait()
                raise AssertionError("the server did not start: " + server.stderr.read().decode())
            time.sleep(0.02)
    yield f"unix://{sock}"
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    log = server.stderr.read().decode()
    server.stderr.close()
    assert not sock.exists()
    assert "secret-value" not in log


def test_the_same_methods_through_a_server(served):
    with sv.connect(served, token="billing-secret") as v:
        assert isinstance(v, sv.Vault)
        s = v.create_subject()
        r = v.put(s, "account", {"name": "Alice"})
        rec = v.get(r, purpose="billing")
        assert rec.json() == {"name": "Alice"} and rec.subject == s and rec.category == "account"
        v.update(r, {"name": "Alice B."})
        assert v.get(r, "account_admin").json() == {"name": "Alice B."}
        assert [i.id for i in v.records(s)] == [r]
        assert len(v.vault_id()) == 32
        assert v.stats()["records_live"] >= 1
        assert v.warnings() == []
        v.flush()


def test_outside_the_grant_is_forbidden(served):
    billing = sv.connect(served, token="billing-secret")
    analytics = sv.connect(served, token="analytics-secret")
    s = billing.create_subject()
    r = billing.put(s, "account", b"secret-value")
    assert analytics.get(r, "billing").data == b"secret-value"
    for call in (
        lambda: analytics.get(r, "account_admin"),
        lambda: analytics.put(s, "account", b"x"),
        lambda: billing.put(s, "job_application", b"x"),
        lambda: billing.get(r, "legal_claims"),
        lambda: billing.erase_subject(s),
        lambda: billing.delete(r),
        lambda: analytics.verify_audit(),
    ):
        with pytest.raises(sv.ForbiddenError) as e:
            call()
        assert "secret-value" not in str(e.value)
    with pytest.raises(sv.ForbiddenError):
        sv.connect(served, token="wrong").stats()
    billing.close()
    analytics.close()


def test_erasure_through_the_server_and_what_is_not_served_yet(served):
    dpo = sv.connect(served, token="dpo-secret")
    s = dpo.create_subject(identifiers={"email": "bob@example.com"})
    assert dpo.find_subject("email", "bob@example.com") == s
    r = dpo.put(s, "job_application", b"cv")
    receipt = dpo.erase_subject(s)
    assert receipt["subject"] == s
    with pytest.raises(sv.ErasedError):
        dpo.get(r, "recruitment")
    assert dpo.find_subject("email", "bob@example.com") is None
    assert dpo.verify_audit()["entries"] > 0
    assert any(e["op"] == "erase_subject" for e in dpo.audit_entries(s))
    dpo.set_policy(POLICY)  # the admin grant: maintenance while serving
    with pytest.raises(sv.InvalidArgumentError, match="not served yet"):
        dpo.path
    with pytest.raises(sv.ForbiddenError):
        sv.connect(served, token="billing-secret").set_policy(POLICY)
    dpo.close()
    with pytest.raises(sv.InvalidArgumentError, match="closed"):
        dpo.stats()


def test_threads_share_a_served_handle(served):
    v = sv.connect(served, token="billing-secret")
    errors = []

    def work(n):
        try:
            s = v.create_subject()
            for i in range(20):
                r = v.put(s, "account", f"{n}-{i}")
                assert v.get(r, "billing").data == f"{n}-{i}".encode()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    v.close()


def test_bad_urls():
    with pytest.raises(sv.InvalidArgumentError):
        sv.connect("http://example.com")
    with pytest.raises(sv.IoError):
        sv.connect("unix:///nonexistent/sv.sock")


def test_rights_and_facts_through_the_server(served):
    dpo = sv.connect(served, token="dpo-secret")
    billing = sv.connect(served, token="billing-secret")
    s = dpo.create_subject()
    dpo.link_identifier(s, "email", "carol@example.com")
    assert dpo.identifiers(s) == [("email", "carol@example.com")]
    dpo.give_consent(s, "marketing", 1767225600)
    m = dpo.put(s, "marketing_contact", {"email": "carol@example.com"})
    assert dpo.get(m, "marketing").json() == {"email": "carol@example.com"}
    dpo.record_event(s, "agreement_end", 1767225600)
    dpo.set_flag(s, "qualified_certificate", True)
    state = dpo.subject_state(s)
    assert state["events"]["agreement_end"] == 1767225600
    assert "qualified_certificate" in state["flags"]
    dpo.withdraw_consent(s, "marketing", 1767225700)
    with pytest.raises(sv.ErasedError):
        dpo.get(m, "marketing")
    dpo.set_opt_out_of_sale(s, True)
    dpo.set_legal_hold(s, True)
    with pytest.raises(sv.LegalHoldError):
        dpo.erase_subject(s)
    dpo.set_legal_hold(s, False)
    dpo.set_restricted(s, True)
    assert dpo.subject_state(s)["restricted"] is True
    exported = dpo.export(s)
    assert exported["subject"] == s
    assert len(dpo.receipt_public_key()) == 64
    assert dpo.purge() >= 0
    # Billing holds no rights grant.
    for call in (
        lambda: billing.set_restricted(s, False),
        lambda: billing.give_consent(s, "marketing", 1767225800),
        lambda: billing.export(s),
        lambda: billing.purge(),
    ):
        with pytest.raises(sv.ForbiddenError):
            call()
    dpo.close()
    billing.close()


def test_requests_and_directives_through_the_server(served):
    dpo = sv.connect(served, token="dpo-secret")
    s = dpo.create_subject()
    q = dpo.open_request(s, "access", 1767225600)
    dpo.extend_request(q, "many systems to search")
    ledger = dpo.requests()
    assert [(r["id"], r["extended"]) for r in ledger if r["id"] == q] == [(q, True)]
    assert any(r["id"] == q for r in dpo.requests(overdue_at=1900000000))
    dpo.close_request(q, 1767312000)
    assert [r["closed_at"] for r in dpo.requests() if r["id"] == q] == [1767312000]
    d = dpo.set_post_mortem_directive(s, "hand_over", to="Erin Example")
    assert len(d) == 32
    dpo.rotate_blind_index()
    with pytest.raises(sv.ForbiddenError):
        sv.connect(served, token="analytics-secret").requests()
    dpo.close()


def test_scan_through_the_server(served):
    dpo = sv.connect(served, token="dpo-secret")
    analytics = sv.connect(served, token="analytics-secret")
    made = {}
    for i in range(150):  # more than a batch of the stream
        s = dpo.create_subject()
        made[dpo.put(s, "account", {"n": i})] = i
    seen = {}
    for rec in analytics.scan("account", "billing"):
        # Other calls on the same handle go on while the scan streams.
        if rec.id in made and len(seen) == 3:
            assert analytics.get(rec.id, "billing").json() == {"n": made[rec.id]}
        seen[rec.id] = rec.json()["n"]
    assert {r: seen[r] for r in made} == made
    with pytest.raises(sv.ForbiddenError):
        analytics.scan("account", "account_admin")
    with pytest.raises(sv.PurposeDeniedError):
        analytics.scan("account", "analytics")
    dpo.close()
    analytics.close()


def test_root_key_rotation_through_the_server(served, tmp_path):
    dpo = sv.connect(served, token="dpo-secret")
    s = dpo.create_subject()
    r = dpo.put(s, "account", b"kept")
    new = bytes(reversed(range(32)))
    dpo.rotate_root_key(new)
    assert dpo.get(r, "billing").data == b"kept"  # the server keeps serving
    with pytest.raises(sv.ForbiddenError):
        sv.connect(served, token="billing-secret").rotate_root_key(new)
    dpo.close()


def test_backup_and_ledger_through_the_server_then_a_restore(served, tmp_path):
    dpo = sv.connect(served, token="dpo-secret")
    kept_subject, gone_subject = dpo.create_subject(), dpo.create_subject()
    kept = dpo.put(kept_subject, "account", b"kept")
    gone = dpo.put(gone_subject, "usage_log", b"gone")
    backup = tmp_path / "offsite.svb"
    info = dpo.backup(backup)  # written here, by this process
    assert backup.exists() and info["window_ends_at"] > info["created_at"]
    with pytest.raises(sv.InvalidArgumentError):
        dpo.backup(backup)  # never overwritten
    with pytest.raises(sv.ForbiddenError):
        sv.connect(served, token="billing-secret").backup(tmp_path / "b2")
    dpo.erase_subject(gone_subject)
    ledger = tmp_path / "ledger.jsonl"
    assert dpo.export_ledger(ledger)["appended"] >= 1
    assert dpo.export_ledger(ledger)["appended"] == 0
    public_key = dpo.receipt_public_key()
    dpo.close()
    assert sv.verify_ledger(ledger, public_key=public_key)["entries"] >= 1

    restored = tmp_path / "restored"
    with pytest.raises(sv.InvalidArgumentError):
        sv.Vault.restore(backup, restored, KEY)  # no ledger
    with pytest.raises(sv.WrongKeyError):
        sv.Vault.restore(backup, restored, b"\x07" * 32, ledgers=[ledger])
    report = sv.Vault.restore(backup, restored, KEY, ledgers=[ledger])
    assert gone_subject in report["re_erased_subjects"]
    with sv.Vault(restored, root_key=KEY) as v:
        assert v.get(kept, "billing").data == b"kept"
        with pytest.raises(sv.ErasedError):
            v.get(gone, "security")
        v.verify_audit()
