import os
import pathlib

import pytest

import shredvault as sv

ROOT = pathlib.Path(__file__).resolve().parents[2]
POLICY = ROOT / "example-policy.toml"
KEY = bytes(range(32))


@pytest.fixture
def vault_path(tmp_path):
    return tmp_path / "vault"


@pytest.fixture
def vault(vault_path):
    v = sv.Vault(vault_path, root_key=KEY, policy=POLICY)
    yield v
    v.close()
