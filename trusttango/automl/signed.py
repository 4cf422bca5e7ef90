"""CMA-ES whose saved state is data, and authenticated: nothing read from a shared study is
ever executed.

Optuna's ``CmaEsSampler`` keeps its optimizer between trials (and between the workers and runs
of one study) as a pickle in the trials' system attributes, and unpickles the newest one it
finds. Anyone who can write to the study's storage (a shared PostgreSQL database, a copied
``study.db``) could put a payload there that runs on every CMA-ES worker that resumes or joins
the study. :class:`SignedCmaEsSampler` stores the optimizer's state (``cmaes.CMA``'s own
``__getstate__``: numbers and arrays) as JSON instead, and never unpickles anything; each state
carries an HMAC-SHA256 tag (RFC 2104) under a key kept outside the storage (:func:`study_key`),
so a state someone else wrote, which could still steer the search, is refused in one line.

Workers on several machines share a study only when they share the key: set
``TRUSTTANGO_STUDY_KEY`` (64 hex digits) on each of them, or copy the key file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

import numpy as np
import optuna
from cmaes import CMA

from trusttango.errors import InputError, require

KEY_ENV = "TRUSTTANGO_STUDY_KEY"
KEY_FILE = Path("~/.config/trusttango/study.key")  # created (mode 0600) on first use when KEY_ENV is not set
TAG_CHARS = 64  # hex digits of an HMAC-SHA256 tag


def study_key() -> bytes:
    """The key that signs saved sampler state: ``TRUSTTANGO_STUDY_KEY`` (hex), else the key file,
    created with 32 random bytes the first time."""
    if os.environ.get(KEY_ENV):
        return _hex_key(os.environ[KEY_ENV], KEY_ENV)
    path = KEY_FILE.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _hex_key(path.read_text(), str(path))
    with os.fdopen(handle, "w") as file:
        file.write(secrets.token_hex(32))
    return _hex_key(path.read_text(), str(path))


def _hex_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise InputError(f"{source}: expected the study key as hex digits") from None
    require(len(key) >= 16, f"{source}: the study key must hold at least 16 bytes (32 hex digits)")
    return key


def _tag(key: bytes, payload_hex: str) -> str:
    return hmac.new(key, payload_hex.encode(), hashlib.sha256).hexdigest()


def _encode(value: object) -> object:
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": str(value.dtype)}
    return value.item() if isinstance(value, np.generic) else value


def dump_state(optimizer: CMA) -> str:
    """``optimizer``'s state as JSON: numbers, lists and arrays (``{"array": ..., "dtype": ...}``)."""
    return json.dumps({k: _encode(v) for k, v in optimizer.__getstate__().items()}, allow_nan=True)


def load_state(text: str) -> CMA:
    """The ``cmaes.CMA`` whose state :func:`dump_state` wrote (plain data: nothing is executed)."""
    state = {
        k: np.asarray(v["array"], dtype=np.dtype(v["dtype"])) if isinstance(v, dict) else v
        for k, v in json.loads(text).items()
    }
    optimizer = CMA.__new__(CMA)
    optimizer.__setstate__(state)
    return optimizer


class SignedCmaEsSampler(optuna.samplers.CmaEsSampler):
    """``CmaEsSampler`` (plain CMA: no ``use_separable_cma`` or ``with_margin``) whose saved
    optimizer is JSON data with an HMAC tag under :func:`study_key`; a state without a valid tag
    is refused (:class:`~trusttango.errors.InputError`). One sampler object per thread."""

    def __init__(self, *args: object, key: bytes | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._key = key if key is not None else study_key()
        self._current: CMA | None = None  # the optimizer this sample works with (what is saved)

    def _init_optimizer(self, *args: object, **kwargs: object) -> CMA:
        self._current = super()._init_optimizer(*args, **kwargs)
        return self._current

    def _split_optimizer_str(self, optimizer_str: str) -> dict[str, str]:
        """Save :func:`dump_state` of the current optimizer (Optuna's pickle, ``optimizer_str``, is dropped)."""
        state = dump_state(self._current)
        return super()._split_optimizer_str(_tag(self._key, state) + state)

    def _restore_optimizer(self, completed_trials: list[optuna.trial.FrozenTrial]) -> CMA | None:
        self._current = None
        for trial in reversed(completed_trials):
            attrs = {k: v for k, v in trial.system_attrs.items() if k.startswith(self._attr_key_optimizer)}
            if not attrs:
                continue
            signed = self._concat_optimizer_attrs(attrs)
            tag, state = signed[:TAG_CHARS], signed[TAG_CHARS:]
            require(
                hmac.compare_digest(tag, _tag(self._key, state)),
                f"study: the CMA-ES state saved with trial {trial.number} is not signed with this key "
                f"({KEY_ENV} or {KEY_FILE}); refusing to load it",
            )
            self._current = load_state(state)
            break
        return self._current
