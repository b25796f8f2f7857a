"""The proofs' secret and log key: the embedded default makes them once, whoever asks first; the
fleet must be given them."""

import threading

import pytest
from pydantic import SecretStr

from broker.proofkeys import NotConfigured, proof_keys
from broker.settings import Settings


def test_processes_asking_at_once_on_a_new_folder_all_get_the_same_keys(tmp_path):
    for trial in range(10):
        settings = Settings(data_dir=tmp_path / str(trial))
        found: list = []

        def ask(settings=settings, found=found):
            keys = proof_keys(settings)
            found.append((keys.secret, keys.signer.public_key().public_bytes_raw()))

        askers = [threading.Thread(target=ask) for _ in range(8)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
        assert len(found) == 8 and len(set(found)) == 1
        assert len(found[0][0]) >= 32


def test_a_short_secret_is_refused_and_the_fleet_must_be_given_both(tmp_path):
    (tmp_path / "proof-secret").write_bytes(b"")  # as a crash mid-write would have left it
    with pytest.raises(NotConfigured, match="shorter than 32"):
        proof_keys(Settings(data_dir=tmp_path))
    fleet = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://x/y")
    with pytest.raises(NotConfigured, match="HUZHU_PROOF_SECRET is not set"):
        proof_keys(fleet)
    with pytest.raises(NotConfigured, match="shorter than 32"):
        proof_keys(fleet.model_copy(update={"proof_secret": SecretStr("short")}))


def test_the_keys_never_show_the_secret(tmp_path):
    keys = proof_keys(Settings(data_dir=tmp_path))
    assert keys.secret.hex() not in repr(keys) and str(keys.secret) not in repr(keys)
