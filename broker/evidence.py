"""The evidence store: investigators' files kept by their SHA-256 in a folder (a volume the
fleet shares), never in the database's rows and never in a task message. A file is written
whole before its name appears, and checked against its name whenever it is read."""

import hashlib
import os
import re
import tempfile
from pathlib import Path

from broker.settings import get_settings

_KEY = re.compile(r"[0-9a-f]{64}")


class EvidenceMissing(LookupError):
    pass


class EvidenceCorrupt(RuntimeError):
    """The bytes under a name are not the bytes that name was made from."""


class EvidenceStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise EvidenceMissing(f"{key!r} is not an evidence file's SHA-256")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        """Store the bytes (once: the same bytes have the same name; a missing or damaged copy
        is written again); returns their name."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists() and _sha256_of(path) == key:
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written and synced under a temporary name, then renamed: a reader never sees half.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise EvidenceMissing(f"evidence {key} is not in the store") from None
        if hashlib.sha256(data).hexdigest() != key:
            raise EvidenceCorrupt(f"evidence {key}: the stored bytes do not match their hash")
        return data


def _sha256_of(path: Path) -> str:
    with path.open("rb") as stored:
        return hashlib.file_digest(stored, "sha256").hexdigest()


def evidence_store() -> EvidenceStore:
    return EvidenceStore(get_settings().evidence_folder)
