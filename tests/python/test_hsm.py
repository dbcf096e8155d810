"""The root key in a PKCS#11 token from Python: `root_key=` takes a
`pkcs11:` URI as well as 32 bytes.

scripts/test makes a SoftHSM2 token and a key in it (`shredvault init
--create-key`) and sets SV_TEST_PKCS11_URI, SV_TEST_PKCS11_URI_2 (a second
key) and SOFTHSM2_CONF; without them (a run outside scripts/test on a
machine without SoftHSM2) this module is skipped, saying so.
"""
import os

import pytest

import shredvault as sv
from conftest import KEY, POLICY

URI = os.environ.get("SV_TEST_PKCS11_URI")
URI_2 = os.environ.get("SV_TEST_PKCS11_URI_2")
pytestmark = pytest.mark.skipif(
    URI is None or URI_2 is None,
    reason="no PKCS#11 token: run scripts/test (it sets SV_TEST_PKCS11_URI)",
)


def test_a_vault_opens_with_a_key_in_the_token(tmp_path):
    path = tmp_path / "vault"
    with sv.Vault(path, root_key=URI, policy=POLICY) as v:
        s = v.create_subject(identifiers={"email": "ana@example.com"})
        r = v.put(s, "account", b"in the token")
    with sv.Vault(path, root_key=URI) as v:
        assert v.get(r, purpose="billing").data == b"in the token"
    with pytest.raises(sv.WrongKeyError):
        sv.Vault(path, root_key=KEY)
    with pytest.raises(sv.WrongKeyError):
        sv.Vault(path, root_key=URI_2)


def test_rotation_to_another_token_key(tmp_path):
    path = tmp_path / "vault"
    with sv.Vault(path, root_key=KEY, policy=POLICY) as v:
        s = v.create_subject()
        r = v.put(s, "account", b"moved")
        v.rotate_root_key(URI_2)
    with pytest.raises(sv.WrongKeyError):
        sv.Vault(path, root_key=KEY)
    with sv.Vault(path, root_key=URI_2) as v:
        assert v.get(r, purpose="billing").data == b"moved"


def test_bad_root_keys_are_refused(tmp_path):
    path = tmp_path / "vault"
    with pytest.raises(sv.InvalidArgumentError):
        sv.Vault(path, root_key="not a uri", policy=POLICY)
    with pytest.raises(sv.InvalidArgumentError):
        sv.Vault(path, root_key="pkcs11:object=x", policy=POLICY)
    with pytest.raises(TypeError):
        sv.Vault(path, root_key=42, policy=POLICY)  # type: ignore[arg-type]
    missing = URI.split("?")[0].replace("object=", "object=no-such-") + "?" + URI.split("?")[1]
    with pytest.raises(sv.WrongKeyError, match="not in its token"):
        sv.Vault(path, root_key=missing, policy=POLICY)
