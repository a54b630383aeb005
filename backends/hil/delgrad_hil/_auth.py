"""Tokens, message signatures and the replay defence.

Every message carries an HMAC-SHA256 over all its other frames, keyed with a token both sides
share (from ``$DELGRAD_HIL_TOKEN`` or a file); signatures are compared in constant time.  The
token is never part of a message, a log line or an error message.  A `ReplayGuard` refuses a
signed message seen before (its nonce) or sent outside a time window.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import os
import secrets
import stat
import time
import warnings
from pathlib import Path

from delgrad_core import InvalidValueError

__all__ = ["TOKEN_ENV", "MIN_TOKEN_CHARS", "SIGNATURE_BYTES", "new_token", "load_token", "write_token_file",
           "Signer", "ReplayGuard"]

TOKEN_ENV = "DELGRAD_HIL_TOKEN"
MIN_TOKEN_CHARS = 16
_MAX_TOKEN_FILE_BYTES = 4096  # (a token is tens of characters; reading more is a wrong file)
SIGNATURE_BYTES = hashlib.sha256().digest_size


def new_token() -> str:
    """A fresh random token (64 hex characters, 256 bits)."""
    return secrets.token_hex(32)


def _checked(token: str, source: str) -> bytes:
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidValueError(f"{source}: the token must have at least {MIN_TOKEN_CHARS} characters "
                                f"(make one with `delgrad hil new-token FILE`)")
    try:
        return token.encode()
    except UnicodeEncodeError:  # (bytes of no UTF-8 text in the environment or a command line, read as escapes)
        raise InvalidValueError(f"{source}: not UTF-8 text; give the token `delgrad hil new-token` wrote") from None


def load_token(token: str | None = None, token_file: str | os.PathLike | None = None) -> bytes:
    """The shared token: `token` if given, else the contents of `token_file`, else
    ``$DELGRAD_HIL_TOKEN``; surrounding whitespace is ignored.

    Raises `InvalidValueError` (naming where it looked, never the token) if there is none or
    it is shorter than `MIN_TOKEN_CHARS`.
    """
    if token is not None:
        if not isinstance(token, str):
            raise InvalidValueError(f"token: expected a string, got {type(token).__name__}")
        return _checked(token, "token")
    if token_file is not None:
        if not isinstance(token_file, (str, os.PathLike)):  # (e.g. --backend-option token_file=3, read as JSON)
            raise InvalidValueError(f"token_file: expected a file path, got {token_file!r}")
        if not os.fspath(token_file):  # (read as the working directory: "cannot read . (Is a directory)")
            raise InvalidValueError("token_file: expected a file path, got an empty one")
        path = Path(token_file).expanduser()
        try:  # (opened without waiting: a FIFO without a writer blocked the open for ever)
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    raise InvalidValueError(f"token_file {path}: not a regular file (a pipe, device, socket or "
                                            "folder); give the file `delgrad hil new-token` wrote")
                data = handle.read(_MAX_TOKEN_FILE_BYTES + 1)
        except OSError as exc:
            raise InvalidValueError(f"token_file: cannot read {path} ({exc.strerror or exc})") from None
        if len(data) > _MAX_TOKEN_FILE_BYTES:
            raise InvalidValueError(f"token_file {path}: larger than {_MAX_TOKEN_FILE_BYTES} bytes; "
                                    "is it a token file?")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidValueError(f"token_file {path}: not UTF-8 text; is it a token file?") from None
        token = _checked(text, f"token_file {path}")
        if mode & 0o077:  # (`new-token` writes 0600)
            warnings.warn(f"token_file {path}: other users may read it (mode {stat.S_IMODE(mode):03o}); anyone who "
                          f"can read the token can use the device: run `chmod 600 {path}`", stacklevel=2)
        return token
    text = os.environ.get(TOKEN_ENV)
    if text is None:
        raise InvalidValueError(f"no token: set ${TOKEN_ENV} or give a token file "
                                f"(make one with `delgrad hil new-token FILE`)")
    return _checked(text, f"${TOKEN_ENV}")


def write_token_file(path: str | os.PathLike) -> Path:
    """Write a fresh token to a new file readable by its owner only; an existing file is kept
    (`FileExistsError`).  A path that exists and is not a regular file, or whose folder is
    missing or not writable, raises `InvalidValueError`."""
    if os.fspath(path).endswith(("/", os.sep)):  # (Path drops the slash: "t/" wrote a file "t")
        raise InvalidValueError(f"{os.fspath(path)} names a folder (it ends in {os.sep}); give a file path")
    path = Path(path).expanduser()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if not path.is_file():  # (e.g. /dev/null or a folder: no token is kept there)
            raise InvalidValueError(f"{path} exists and is not a regular file; choose another path") from None
        raise
    except FileNotFoundError as exc:
        if path.parent.is_dir():  # (e.g. /proc, whose files are made by the kernel alone)
            raise InvalidValueError(f"cannot write {path} ({exc.strerror}): the folder {path.parent} takes no new "
                                    "files; choose another path") from None
        raise InvalidValueError(f"cannot write {path}: the folder {path.parent} does not exist (make it first, or "
                                f"choose another path)") from None
    except OSError as exc:
        raise InvalidValueError(f"cannot write {path} ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new_token() + "\n")
    return path


class Signer:
    """HMAC-SHA256 signatures over a sequence of frames (each prefixed with its length, so
    moving bytes between frames changes the signature)."""

    def __init__(self, token: bytes):
        self._key = bytes(token)

    def signature(self, frames) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for frame in frames:
            mac.update(len(frame).to_bytes(8, "big"))
            mac.update(frame)
        return mac.digest()

    def verify(self, signature: bytes, frames) -> bool:
        """True if `signature` is that of `frames` (constant-time comparison)."""
        return hmac.compare_digest(bytes(signature), self.signature(frames))

    def __repr__(self) -> str:
        return "Signer(<token hidden>)"


class ReplayGuard:
    """Refuses a message whose nonce was seen, or whose send time is more than `window_s` away
    from now.  Nonces are remembered until their message would be too old anyway, at most
    `max_nonces` of them.

    Parameters
    ----------
    window_s : float
        Largest accepted difference between a message's send time and the receiver's clock.
    max_nonces : int
        Bound on the remembered nonces; beyond it new messages are refused as busy.
    clock : callable
        Seconds since the epoch (`time.time`).
    """

    def __init__(self, window_s: float = 60.0, max_nonces: int = 1_000_000, clock=time.time):
        self.window_s = float(window_s)
        self.max_nonces = int(max_nonces)
        self._clock = clock
        self._expiry: dict[bytes, float] = {}
        self._queue: list[tuple[float, bytes]] = []

    def check(self, nonce: bytes, sent_at: float) -> tuple[str, str] | None:
        """None if the message is fresh (its nonce is then remembered), else (error code, reason)."""
        now = self._clock()
        while self._queue and self._queue[0][0] < now:
            _, old = heapq.heappop(self._queue)
            self._expiry.pop(old, None)
        if not math.isfinite(sent_at) or abs(now - sent_at) > self.window_s:
            ahead = sent_at - now
            apart = f"{abs(ahead):.1f}" if 0.1 <= abs(ahead) < 1e9 else f"{abs(ahead):.3g}"  # (not 309 digits, nor 0.0)
            when = "with no valid time" if not math.isfinite(sent_at) else \
                f"{apart} s {'ahead of' if ahead > 0 else 'behind'} the service's clock"
            return "replayed", (f"sent {when}, outside the {self.window_s:g} s window (a replay, or clocks that "
                                "disagree)")
        if nonce in self._expiry:
            return "replayed", "this message was received before (a replay)"
        if len(self._expiry) >= self.max_nonces:
            return "busy", f"more than {self.max_nonces} messages within {self.window_s:g} s"
        expiry = sent_at + self.window_s
        self._expiry[nonce] = expiry
        heapq.heappush(self._queue, (expiry, nonce))
        return None
