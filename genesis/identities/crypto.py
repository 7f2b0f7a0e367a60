"""Biometric data at rest: embeddings and face crops are Fernet tokens (AES-128-CBC + HMAC-SHA256).

The key comes from the environment, ``GENESIS_EMBEDDING_KEY``: one Fernet key
(``genesis identities new-key`` prints one), or several separated by commas during a rotation —
the first encrypts, every one of them decrypts. ``genesis identities rotate-key`` then
re-encrypts every stored blob with the first key, after which the old keys can be dropped.

A blob is stored as ``b"GF2"`` + the token's bytes: the Fernet token is base64 text, kept decoded (a quarter
smaller: 585 bytes instead of 780 for a 128-d float32 embedding, 329 for a track face's float16 one, ~1.0 kB
instead of ~1.4 kB for a face crop).
Blobs written before this form, ``b"GF1"`` + the token as text, are still read; ``rotate-key`` rewrites them
in the new form. Without a key, blobs are stored in the clear (a first try, a laptop); ``rotate-key`` encrypts
them once a key is set. A stored encrypted blob read without the key (or with the wrong one) is a clear error,
never garbage.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_ENV = "GENESIS_EMBEDDING_KEY"
MAGIC = b"GF2"
"""The prefix of an encrypted blob: the Fernet token's bytes follow (its version byte 0x80 first)."""
TEXT_MAGIC = b"GF1"
"""The prefix of an encrypted blob of the first form: the Fernet token as base64 text follows ("gA" first)."""
ENCRYPTED_PREFIXES = (MAGIC + b"\x80", TEXT_MAGIC + b"gA")
"""How every encrypted blob starts (the new form, the first form): a clear float32 (or float16: track faces)
vector starting with one of these by chance is a 1 in 2**32 event (a clear crop starts with a JPEG or WebP
header)."""


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
        return MAGIC + base64.urlsafe_b64decode(self._fernet.encrypt(data))

    def decrypt(self, blob: bytes) -> bytes:
        blob = bytes(blob)
        if not is_encrypted(blob):
            return blob
        if self._fernet is None:
            raise BiometricKeyError(f"biometric data is encrypted: set {KEY_ENV} to the key it was written with")
        token = base64.urlsafe_b64encode(blob[len(MAGIC):]) if blob.startswith(MAGIC) else blob[len(TEXT_MAGIC):]
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise BiometricKeyError(f"biometric data cannot be decrypted with {KEY_ENV}: wrong key") from None

    def rotate(self, blob: bytes) -> bytes:
        """The blob encrypted with the first key (plain blobs get encrypted)."""
        if self._fernet is None:
            raise BiometricKeyError(f"set {KEY_ENV} (the new key first) to rotate")
        return self.encrypt(self.decrypt(blob))


def is_encrypted(blob: bytes) -> bool:
    return any(bytes(blob[:len(p)]) == p for p in ENCRYPTED_PREFIXES)
