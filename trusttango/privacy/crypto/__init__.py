"""Cryptography for private computation: CKKS homomorphic encryption for private inference
(TenSEAL, imported when a context is made) and additive secret sharing for a secure average."""

from trusttango.privacy.crypto.he import (
    HENet,
    HEReport,
    encrypt_image,
    encrypted_forward,
    evaluate_encrypted,
    make_context,
)
from trusttango.privacy.crypto.secret_sharing import SharedAverage, secure_average

__all__ = [
    "HENet",
    "HEReport",
    "SharedAverage",
    "encrypt_image",
    "encrypted_forward",
    "evaluate_encrypted",
    "make_context",
    "secure_average",
]
