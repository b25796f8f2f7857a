"""Who is calling: a bearer token signed by the platform (EdDSA or RS256), `sub` = member_ref,
`aud` and `exp` enforced, staff roles in `roles`. The embedded default trusts a development key
of its own data folder, and nothing else does."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.settings import Settings

ROLES = {"reviewer", "investigator", "operator"}
DEV_KEY_NAME = "api-development-key.pem"


class NotConfigured(RuntimeError):
    """No key to check tokens with: the fleet must be given the platform's."""


@dataclass(frozen=True)
class Caller:
    member_ref: str
    roles: frozenset[str]


def development_key(settings: Settings) -> Ed25519PrivateKey:
    """The embedded default's own signing key, made once in its data folder."""
    if not settings.embedded:
        raise NotConfigured("the development key is for the embedded default only")
    path = settings.data_dir / DEV_KEY_NAME
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def public_key(settings: Settings):
    """The key tokens are checked with: the platform's, or on the embedded default its own."""
    if settings.api_public_key_file:
        return serialization.load_pem_public_key(Path(settings.api_public_key_file).read_bytes())
    if settings.embedded:
        return development_key(settings).public_key()
    raise NotConfigured(
        "HUZHU_API_PUBLIC_KEY_FILE is not set: the fleet checks members' tokens with the "
        "platform's public key and never with a development key"
    )


def mint(settings: Settings, member_ref: str, roles: set[str], minutes: int = 60) -> str:
    """A development token (embedded default only), as the platform would sign one."""
    unknown = roles - ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
    now = datetime.now(UTC)
    claims = {
        "sub": member_ref,
        "aud": settings.api_audience,
        "iat": now,
        "exp": now + timedelta(minutes=minutes),
        "roles": sorted(roles),
    }
    return jwt.encode(claims, development_key(settings), algorithm="EdDSA")


def caller_of(token: str, settings: Settings) -> Caller:
    """Raises jwt.InvalidTokenError for a token that is unsigned, expired, for another
    audience or without a subject."""
    key = public_key(settings)
    # Only the algorithm of the key's own type: a token of another type is refused as invalid
    # (and a key is never used with an algorithm it was not made for).
    algorithm = "EdDSA" if isinstance(key, Ed25519PublicKey) else "RS256"
    claims = jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        audience=settings.api_audience,
        options={"require": ["sub", "exp", "aud"]},
    )
    roles = claims.get("roles") or []
    if not isinstance(roles, list):
        raise jwt.InvalidTokenError("roles must be a list")
    return Caller(str(claims["sub"]), frozenset(str(r) for r in roles) & ROLES)
