"""The wire format of the HIL service, version 2 (docs/hil-protocol.md).

A message is 3 or 4 ZeroMQ frames::

    0  protocol   b"delgrad-hil/2"
    1  signature  HMAC-SHA256 (32 bytes) over frames 0, 2 and 3, each prefixed by its length
    2  header     a msgpack map: type, nonce, ts and the fields of the type
    3  payload    optional: request, result, calibration or network bytes (npz, never pickle)

`encode` builds the frames; `decode` checks a received message in the order size, protocol,
signature, header, fields, and raises `ProtocolError` (with the error code of the reply it
deserves) for anything else: it never raises another exception and never runs code from a
message.  msgpack is read without extension types, so a header holds only plain values.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass

import msgpack

import delgrad_core
from delgrad_core import MAX_SEED, BackendError, DelgradError, UnsupportedNetworkError, save_network

from delgrad_hil._auth import SIGNATURE_BYTES

__all__ = [
    "PROTOCOL", "VERSION", "MAX_HEADER_BYTES", "DEFAULT_MAX_MESSAGE_BYTES", "REPLY_SIZE_FACTOR", "ERROR_CODES",
    "JOB_STATES", "REQUEST_TYPES", "REPLY_TYPES", "CLIENT_ID", "CLIENT_ID_RULE", "ProtocolError", "Message", "encode",
    "decode", "new_header", "network_payload", "error_fields", "failure_fields", "device_error", "DEVICE_ERRORS",
    "calibration_job_id", "read_unverified_error", "reply_limit", "shortened", "REFUSAL_CODES", "MAX_MESSAGE_CHARS",
]

VERSION = 2  # 2: job replies name the service that ran them
PROTOCOL = b"delgrad-hil/%d" % VERSION
_OTHER_VERSION = re.compile(rb"delgrad-hil/(?:0|[1-9][0-9]{0,8})")  # (a number as written: not "02")
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 128 * 2**20
# a reply (a result with arrival times) may be this many times the largest request; a larger
# result is answered "too_large" (a client drops larger replies)
REPLY_SIZE_FACTOR = 4
_NONCE_BYTES = 16
# an error message quoting a request's content (e.g. a 2 MB option value) is cut to this length,
# in the reply and in the log
MAX_MESSAGE_CHARS = 2000


def reply_limit(max_message_bytes: int) -> int:
    """The size of the largest reply (all frames) a client takes from a service whose message
    limit is `max_message_bytes`: a payload of up to `REPLY_SIZE_FACTOR` times that limit (the
    service refuses larger results) with its header, signature and protocol frame."""
    return REPLY_SIZE_FACTOR * max_message_bytes + MAX_HEADER_BYTES + SIGNATURE_BYTES + len(PROTOCOL)


# error code -> whether sending the same job again (as a new message) can succeed
ERROR_CODES = {
    "malformed": False,            # not a message of this protocol (frames, header, fields)
    "unsupported_version": False,  # another protocol version
    "bad_signature": False,        # unsigned, or signed with another token
    "replayed": False,             # a message seen before, or sent outside the time window
    "too_large": False,            # a request above the message size limit, or a result above the reply limit
    "bad_request": False,          # the payload is not what the header says (or not readable)
    "unknown_calibration": False,  # the request names a calibration the service does not hold: send it in full
    "busy": True,                  # queue full (or an injected busy answer): try again later
    "shutting_down": True,         # the service is stopping: try again after its restart
    "device_error": False,         # the device refused or failed (its own `retryable` decides)
    "internal": False,             # a fault of the service itself
}
# the codes of messages the service refuses (the others answer jobs): each is counted in `status`
REFUSAL_CODES = tuple(code for code in ERROR_CODES if code not in ("device_error", "internal"))

# delgrad errors a device may raise that come back as themselves (others: BackendError)
DEVICE_ERRORS = ("BackendError", "BackendUnavailable", "ExecutionTimeout", "CalibrationError", "InvalidResultError",
                 "InvalidValueError", "UnsupportedNetworkError", "FileFormatError")

JOB_STATES = ("queued", "running", "finished", "unknown")
CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # what a client may call itself
CLIENT_ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ : @ -"
_JOB_ID = re.compile(r"[0-9a-f]{64}")


class ProtocolError(BackendError):
    """A message that breaks the protocol, or an error answer of the service.

    Attributes
    ----------
    code : str
        One of `ERROR_CODES`.
    reply_to : bytes or None
        Nonce of the message this error answers, when it could be read.
    """

    def __init__(self, code: str, message: str, *, reply_to: bytes | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.code = code
        self.reply_to = reply_to
        self.retryable = ERROR_CODES.get(code, False) if retryable is None else bool(retryable)


@dataclass(frozen=True)
class Message:
    """A decoded message: its header (a dict with at least type, nonce, ts) and payload."""

    header: dict
    payload: bytes | None = None

    @property
    def type(self) -> str:
        return self.header["type"]


def new_header(message_type: str, **fields) -> dict:
    """A header with a fresh random nonce and the current time."""
    return {"type": message_type, "nonce": os.urandom(_NONCE_BYTES), "ts": time.time(), **fields}


def encode(signer, header: dict, payload: bytes | None = None) -> list[bytes]:
    """The frames of a message, signed with `signer`."""
    header_bytes = msgpack.packb(header, use_bin_type=True)
    signed = [PROTOCOL, header_bytes] if payload is None else [PROTOCOL, header_bytes, payload]
    return [PROTOCOL, signer.signature(signed), *signed[1:]]


def network_payload(network) -> bytes | None:
    """The bytes a network travels as (a calibrate message's payload, and to the device
    process): its npz file; None for no network."""
    if network is None:
        return None
    buffer = io.BytesIO()
    save_network(network, buffer)
    return buffer.getvalue()


def calibration_job_id(seed: int | None, network_bytes: bytes | None) -> str:
    """The job id of a calibration: SHA-256 (hex) of its seed and network bytes."""
    hasher = hashlib.sha256(b"delgrad-hil calibrate\n")
    hasher.update(json.dumps({"seed": seed, "network": network_bytes is not None}, sort_keys=True).encode())
    hasher.update(b"\n" + (network_bytes or b""))
    return hasher.hexdigest()


def error_fields(code: str, message: str, *, retryable: bool | None = None, error_class: str | None = None,
                  capability: str | None = None) -> dict:
    """The fields of an error reply with `code` (its retryable flag by default that of the code;
    its message `shortened`)."""
    return {"type": "error", "code": code, "message": shortened(message),
            "retryable": ERROR_CODES[code] if retryable is None else retryable,
            "error_class": error_class, "capability": capability}


def shortened(message: object) -> str:
    """`message` as text, cut to `MAX_MESSAGE_CHARS` characters and saying so."""
    text = str(message)
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}... (cut: {len(text):,} characters in all)"


def failure_fields(exc: BaseException) -> dict:
    """The fields of the error reply to a job that raised `exc` on the device: "device_error"
    naming a delgrad error's class (the nearest of `DEVICE_ERRORS` it derives from) and missing
    capability, else "internal"."""
    if isinstance(exc, DelgradError):
        error_class = next(cls.__name__ for cls in type(exc).__mro__
                           if cls.__name__ in DEVICE_ERRORS + ("DelgradError",))
        return error_fields("device_error", str(exc), retryable=exc.retryable, error_class=error_class,
                            capability=getattr(exc, "capability", None))
    return error_fields("internal", f"the service failed: {type(exc).__name__}: {exc}")


def device_error(fields: dict, message: str) -> BackendError:
    """The delgrad error that `fields` (of a "device_error" reply) describe, saying `message`:
    the device's error class when it is one of `DEVICE_ERRORS`, else `BackendError`, with the
    device's retryable flag."""
    name = fields.get("error_class")
    if name == "UnsupportedNetworkError":
        error = UnsupportedNetworkError(message, capability=fields.get("capability") or "resources")
    else:
        error = getattr(delgrad_core, name)(message) if name in DEVICE_ERRORS else BackendError(message)
    error.retryable = bool(fields["retryable"])
    return error


# -- field rules: value -> problem or None ---------------------------------------------------------
def _bytes_of(length):
    return lambda v: None if isinstance(v, bytes) and len(v) == length else f"expected {length} bytes"


def _pattern(regex, what):
    return lambda v: None if isinstance(v, str) and regex.fullmatch(v) else f"expected {what}"


def _of(kind, what):
    def rule(v):
        ok = isinstance(v, kind) and (kind is bool or not isinstance(v, bool))
        return None if ok else f"expected {what}"

    return rule


def _finite(v):
    return None if isinstance(v, float) and math.isfinite(v) else "expected a finite float"


def _seed(v):
    ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED)
    return None if ok else "expected None or an integer in [0, 2**63 - 1]"


def _optional(rule):
    return lambda v: None if v is None else rule(v)


def _seconds(v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return None if ok else "expected a number of seconds >= 0"


_NONCE = _bytes_of(_NONCE_BYTES)
_COMMON = {"type": _of(str, "a string"), "nonce": _NONCE, "ts": _finite}
_REQUEST_COMMON = {**_COMMON, "client": _pattern(CLIENT_ID, CLIENT_ID_RULE)}
_REPLY_COMMON = {**_COMMON, "reply_to": _optional(_NONCE)}
_JOB = _pattern(_JOB_ID, "64 lower-case hex digits")
_TEXT = _of(str, "a string")
_BOOL = _of(bool, "true or false")
_DICT = _of(dict, "a map")

# type -> (field rules, payload: "required" | "optional" | "none")
REQUEST_TYPES = {
    "hello": ({}, "none"),
    "health": ({}, "none"),
    "status": ({"executions": _optional(_BOOL)}, "none"),
    "calibrate": ({"job": _JOB, "seed": _seed, "expires_s": _optional(_seconds)}, "optional"),
    "execute": ({"job": _JOB, "expires_s": _optional(_seconds)}, "required"),
    "probe": ({"job": _JOB}, "none"),
}
_SERVICE_ID = _pattern(re.compile(r"[0-9a-f]{16}"), "16 lower-case hex digits")
_WARNINGS = _optional(lambda value: None if isinstance(value, list) and len(value) <= 100 and all(
    isinstance(line, str) for line in value) else "expected a list of at most 100 strings")
_JOB_REPLY = {"job": _JOB, "cached": _BOOL, "run_s": _finite, "service": _SERVICE_ID, "warnings": _WARNINGS}
REPLY_TYPES = {
    "welcome": ({"info": _DICT}, "none"),
    "health": ({"info": _DICT}, "none"),
    "status": ({"info": _DICT}, "none"),
    "calibration": (_JOB_REPLY, "required"),
    "result": (_JOB_REPLY, "required"),
    "job_state": ({"job": _JOB, "state": lambda v: None if v in JOB_STATES else f"expected one of {JOB_STATES}",
                   "result_bytes": _optional(_of(int, "an integer"))}, "none"),
    "error": ({"code": _pattern(re.compile(r"[a-z_]{1,32}"), "an error code"), "message": _TEXT,
               "retryable": _BOOL, "error_class": _optional(_TEXT), "capability": _optional(_TEXT)}, "none"),
}


def _unpack_header(data: bytes, reply_to=None) -> dict:
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0, use_list=True)
    except Exception as exc:  # msgpack raises several types for malformed input
        raise ProtocolError("malformed", f"the header is not msgpack ({type(exc).__name__})", reply_to=reply_to) \
            from None
    if not isinstance(header, dict):
        raise ProtocolError("malformed", "the header is not a map")
    return header


def decode(frames, signer, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, replies: bool = False) -> Message:
    """Check and decode a received message (a request, or a reply if `replies`).

    Raises `ProtocolError` with the code of the error it deserves; nothing else.
    """
    if not 3 <= len(frames) <= 4:  # (counted and measured before anything is copied: zmq.Frames may be large)
        raise ProtocolError("malformed", f"expected 3 or 4 frames, got {len(frames)}")
    try:
        size = sum(len(frame) for frame in frames)
    except TypeError:
        raise ProtocolError("malformed", "frames must be bytes") from None
    if size > max_message_bytes:
        raise ProtocolError("too_large", f"message of {size} bytes is above the limit of {max_message_bytes} bytes")
    try:
        frames = [bytes(frame) for frame in frames]
    except Exception:
        raise ProtocolError("malformed", "frames must be bytes") from None
    protocol, signature, header_bytes = frames[:3]
    if protocol != PROTOCOL:
        if _OTHER_VERSION.fullmatch(protocol):
            if len(signature) == SIGNATURE_BYTES and signer.verify(signature, [PROTOCOL, *frames[2:]]):
                raise ProtocolError("bad_signature", "the version was changed in transit (the message is signed "
                                                     f"as {PROTOCOL.decode()})")
            raise ProtocolError("unsupported_version", f"protocol {protocol[:40]!r} is not supported; this side "
                                                       f"speaks {PROTOCOL.decode()}")
        raise ProtocolError("malformed", "not a delgrad-hil message (first frame)")
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ProtocolError("too_large", f"header of {len(header_bytes)} bytes is above {MAX_HEADER_BYTES} bytes")
    if len(signature) != SIGNATURE_BYTES or not signer.verify(signature, [protocol, *frames[2:]]):
        raise ProtocolError("bad_signature", "unsigned, or signed with another token" if signature
                            else "unsigned message")
    header = _unpack_header(header_bytes)
    nonce = header.get("nonce")
    reply_to = nonce if isinstance(nonce, bytes) and len(nonce) == _NONCE_BYTES else None
    types = REPLY_TYPES if replies else REQUEST_TYPES
    message_type = header.get("type")
    if not isinstance(message_type, str) or message_type not in types:
        raise ProtocolError("malformed", f"unknown message type {str(message_type)[:40]!r}", reply_to=reply_to)
    rules, payload_rule = types[message_type]
    for name, rule in {**(_REPLY_COMMON if replies else _REQUEST_COMMON), **rules}.items():
        problem = rule(header.get(name))
        if problem is not None:
            raise ProtocolError("malformed", f"{message_type} header field {name!r}: {problem}", reply_to=reply_to)
    payload = frames[3] if len(frames) == 4 else None
    if payload is None and payload_rule == "required":
        raise ProtocolError("malformed", f"{_with_article(message_type)} message needs a payload", reply_to=reply_to)
    if payload is not None and payload_rule == "none":
        raise ProtocolError("malformed", f"{_with_article(message_type)} message has no payload", reply_to=reply_to)
    return Message(header, payload)


def _with_article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def read_unverified_error(frames) -> dict | None:
    """The header of a reply whose signature did not verify, if it is a well-formed error
    reply (how a client with the wrong token learns that the service refused it); else None.
    Nothing in it is trusted beyond choosing the error message."""
    try:
        if len(frames) != 3 or bytes(frames[0]) != PROTOCOL:
            return None
        header = _unpack_header(bytes(frames[2]))
    except ProtocolError:
        return None
    if header.get("type") != "error" or not isinstance(header.get("code"), str):
        return None
    return header
