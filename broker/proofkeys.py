"""The proofs' two secrets from the settings: the salt secret and the log's signing key. The
embedded default makes its own in its data folder; the fleet must be given both."""

import os
import secrets
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.settings import Settings, get_settings
from domain.services.proofs import ProofKeys

SECRET_NAME = "proof-secret"
LOG_KEY_NAME = "log-signing-key.pem"
MIN_SECRET = 32


class NotConfigured(RuntimeError):
    """A proof secret or log key is missing or unusable on the fleet."""


def proof_keys(settings: Settings | None = None) -> ProofKeys:
    """The keys of this process's settings (read each time: the files are small and a test or
    the demo may switch settings)."""
    settings = settings or get_settings()
    return ProofKeys(proof_secret(settings), log_key(settings))


def proof_secret(settings: Settings) -> bytes:
    given = settings.proof_secret.get_secret_value()
    if given:
        if len(given) < MIN_SECRET:
            raise NotConfigured(f"HUZHU_PROOF_SECRET is shorter than {MIN_SECRET} characters")
        return given.encode()
    path = _own_file(settings, SECRET_NAME, "HUZHU_PROOF_SECRET")
    _create_once(path, secrets.token_hex(32).encode())
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET:
        raise NotConfigured(f"the proof secret in {path} is shorter than {MIN_SECRET} characters")
    return secret


def log_key(settings: Settings) -> Ed25519PrivateKey:
    if settings.log_key_file:
        path = Path(settings.log_key_file)
    else:
        path = _own_file(settings, LOG_KEY_NAME, "HUZHU_LOG_KEY_FILE")
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _create_once(path, pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise NotConfigured(f"cannot read the log's signing key in {path}: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise NotConfigured(f"the log's signing key in {path} is not an Ed25519 key")
    return key


def log_public_key(settings: Settings) -> bytes:
    return log_key(settings).public_key().public_bytes_raw()


def _own_file(settings: Settings, name: str, variable: str) -> Path:
    """The embedded default's own file; elsewhere every process must share one secret, so a
    missing setting is an error and never a secret made up by each process."""
    if not settings.embedded:
        raise NotConfigured(
            f"{variable} is not set: the fleet's workers and API must share one, "
            "given by the operator (see the README's proofs section)"
        )
    return settings.data_dir / name


def _create_once(path: Path, content: bytes) -> None:
    """Make the file with `content` unless it exists, so that every process uses the first one
    made: written whole to a temporary file, then linked into place (a link never replaces a
    file, and a reader never sees a half-written one)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.write(handle, content)
        os.fsync(handle)
        os.close(handle)
        os.link(temporary, path)  # mkstemp made it 0600
    except FileExistsError:
        pass  # another process made it first: theirs is the one
    finally:
        os.unlink(temporary)
