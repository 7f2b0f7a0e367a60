"""Biometric data at rest: embeddings and face crops are Fernet tokens (AES-128-CBC + HMAC-SHA256).

The key comes from the environment, ``GENESIS_EMBEDDING_KEY``: one Fernet key
(``genesis identities new-key`` prints one), or several separated by commas during a rotation —
the first encrypts, every one of them decrypts. ``genesis identities rotate-key`` then
re-encrypts every stored blob with the first key, after which the old keys can be dropped.

A blob is stored as ``b"GF1" + token``. Without a key, blobs are stored in the clear (a first
try, a laptop); ``rotate-key`` encrypts them once a key is set. A stored encrypted blob read
without the key (or with the wrong one) is a clear error, never garbage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_ENV = "GENESIS_EMBEDDING_KEY"
MAGIC = b"GF1"


class BiometricKeyError(Exception):
    """No key, or a wrong key, for encrypted biometric data."""


class BiometricCipher:
    def __init__(self, keys: list[bytes]) -> None:
        self._keys = keys
        self._fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BiometricCipher:
        env = os.environ if environ is None else environ
        raw = env.get(KEY_ENV, "")
        keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
        try:
            return cls(keys)
        except (ValueError, TypeError) as exc:
            raise BiometricKeyError(f"{KEY_ENV} is not a valid Fernet key (32 url-safe base64 bytes): {exc}") from None

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def encrypt(self, data: bytes) -> bytes:
        if self._fernet is None:
            return data
        return MAGIC + self._fernet.encrypt(data)

    def decrypt(self, blob: bytes) -> bytes:
        blob = bytes(blob)
        if not is_encrypted(blob):
            return blob
        if self._fernet is None:
            raise BiometricKeyError(f"biometric data is encrypted: set {KEY_ENV} to the key it was written with")
        try:
            return self._fernet.decrypt(blob[len(MAGIC):])
        except InvalidToken:
            raise BiometricKeyError(f"biometric data cannot be decrypted with {KEY_ENV}: wrong key") from None

    def rotate(self, blob: bytes) -> bytes:
        """The blob encrypted with the first key (plain blobs get encrypted)."""
        if self._fernet is None:
            raise BiometricKeyError(f"set {KEY_ENV} (the new key first) to rotate")
        return self.encrypt(self.decrypt(blob))


def is_encrypted(blob: bytes) -> bool:
    # Every Fernet token starts with version byte 0x80, "gA" in base64: a clear float32 vector starting with
    # these 5 bytes by chance is a 1 in 2**40 event.
    return bytes(blob[: len(MAGIC) + 2]) == MAGIC + b"gA"
