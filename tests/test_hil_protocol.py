"""The HIL wire format, its signatures and replay guard, the scheduler and the fault plan, in
one process: every malformed, truncated, oversize, unsigned or replayed message is a
`ProtocolError` naming the reply it deserves, and nothing else (hypothesis fuzzing)."""

import io
import logging
import os
import warnings

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import delgrad_core as dg
from _hil import network_and_inputs

from delgrad_hil import FaultPlan, ProtocolError, load_token
from delgrad_hil._auth import TOKEN_ENV, ReplayGuard, Signer, write_token_file
from delgrad_hil._calibration import unwrap, wrap
from delgrad_hil._faults import Faults
from delgrad_hil._protocol import (MAX_HEADER_BYTES, MAX_MESSAGE_CHARS, PROTOCOL, calibration_job_id, decode, encode,
                                   error_fields, new_header)
from delgrad_hil._refusal_log import RefusalLog
from delgrad_hil._scheduler import EXECUTIONS_LISTED, Job, Outcome, QueueFull, Scheduler
from delgrad_hil._service import parse_calibrate, parse_execute

TOKEN = "a-test-token-of-enough-length"
SIGNER = Signer(TOKEN.encode())


def _request_bytes(seed=0):
    network, inputs = network_and_inputs(batch=8)
    request = dg.ExecutionRequest(network, inputs, None, seed)
    return request, request.to_bytes()


def _execute_frames(signer=SIGNER, **changes):
    request, payload = _request_bytes()
    header = new_header("execute", client="c1", job=request.digest)
    header.update(changes)
    return encode(signer, header, payload)


# ---------------------------------------------------------------------------- frames and signatures
def test_a_signed_request_decodes_to_its_header_and_payload():
    frames = _execute_frames()
    message = decode(frames, SIGNER)
    assert message.type == "execute" and message.header["client"] == "c1" and message.payload == frames[3]
    assert frames[0] == PROTOCOL and len(frames[1]) == 32
    assert TOKEN.encode() not in b"".join(frames)


@pytest.mark.parametrize(("change", "code"), [
    (lambda f: f[:2], "malformed"),
    (lambda f: f + [b"x"], "malformed"),
    (lambda f: [b"not-hil"] + f[1:], "malformed"),
    (lambda f: [b"delgrad-hil/3", SIGNER.signature([b"delgrad-hil/3", *f[2:]])] + f[2:], "unsupported_version"),
    (lambda f: [b"delgrad-hil/12345678", b"\0" * 32] + f[2:], "unsupported_version"),  # (any number: was malformed)
    (lambda f: [b"delgrad-hil/02", b"\0" * 32] + f[2:], "malformed"),  # (was "not supported; this side speaks 2")
    (lambda f: [b"delgrad-hil/3"] + f[1:], "bad_signature"),  # (a version digit changed in transit: corrupted)
    (lambda f: [f[0], b""] + f[2:], "bad_signature"),
    (lambda f: [f[0], Signer(b"another-token-of-enough-length").signature([f[0], *f[2:]])] + f[2:], "bad_signature"),
    (lambda f: f[:3] + [f[3][:-10]], "bad_signature"),  # truncated payload
    (lambda f: [f[0], f[1], f[2] + b"\x00"] + f[3:], "bad_signature"),
    (lambda f: [f[0], f[1], f[3], f[2]], "bad_signature"),  # frames swapped
], ids=["two-frames", "five-frames", "foreign", "version-3", "version-12345678", "version-02", "version-digit-changed",
        "unsigned", "other-token", "truncated", "appended", "swapped"])
def test_broken_frames_are_refused_with_the_right_code(change, code):
    with pytest.raises(ProtocolError) as info:
        decode(change(_execute_frames()), SIGNER)
    assert info.value.code == code


class _CountedFrame:
    """A received frame that counts how often it is copied."""
    copies = 0

    def __init__(self, size: int):
        self.size = size

    def __len__(self):
        return self.size

    def __bytes__(self):
        _CountedFrame.copies += 1
        return b"x" * self.size


def test_frames_are_counted_and_measured_before_anything_is_copied():
    """(every frame was copied first: a message of 1000 frames of 1.9 MB took twice its 1.9 GB)"""
    for frames, code in (([_CountedFrame(10)] * 1000, "malformed"), ([_CountedFrame(2**40)] * 4, "too_large")):
        with pytest.raises(ProtocolError) as info:
            decode(frames, SIGNER)
        assert info.value.code == code
    assert _CountedFrame.copies == 0


def test_error_messages_are_cut_in_replies_and_in_the_log(caplog):
    """(a message quoting a request's 2 MB value was sent and logged in full)"""
    message = "delay_kind: expected one of none, axonal, got '" + "q" * 2_000_000 + "'"
    shown = error_fields("bad_request", message)["message"]
    assert shown.startswith(message[:MAX_MESSAGE_CHARS]) and shown.endswith("... (cut: 2,000,048 characters in all)")
    assert error_fields("bad_request", "short")["message"] == "short"
    log = RefusalLog(logging.getLogger("delgrad_hil.test"))
    with caplog.at_level(logging.WARNING):
        log.refused("bad_request", ProtocolError("bad_request", message))
    assert len(caplog.records) == 1 and len(caplog.records[0].getMessage()) < MAX_MESSAGE_CHARS + 100


def test_a_message_above_the_limit_is_too_large_before_its_signature_is_checked():
    frames = _execute_frames()
    with pytest.raises(ProtocolError, match="above the limit") as info:
        decode(frames, SIGNER, max_message_bytes=sum(map(len, frames)) - 1)
    assert info.value.code == "too_large" and not info.value.retryable
    assert decode(frames, SIGNER, max_message_bytes=sum(map(len, frames))).type == "execute"


@pytest.mark.parametrize(("fields", "message"), [
    ({"type": "launch"}, "unknown message type 'launch'"),
    ({"type": ["execute"]}, "unknown message type"),
    ({"nonce": b"short"}, "'nonce': expected 16 bytes"),
    ({"ts": float("nan")}, "'ts': expected a finite float"),
    ({"ts": 5}, "'ts': expected a finite float"),
    ({"client": "has space"}, "'client': expected 1-128 characters"),
    ({"client": "x" * 129}, "'client'"),
    ({"job": "ABC"}, "'job': expected 64 lower-case hex digits"),
    ({"job": None}, "'job'"),
], ids=["type", "type-list", "nonce", "nan-time", "int-time", "client-space", "client-long", "job", "no-job"])
def test_signed_headers_with_bad_fields_are_malformed_naming_the_field(fields, message):
    with pytest.raises(ProtocolError, match=message) as info:
        decode(_execute_frames(**fields), SIGNER)
    assert info.value.code == "malformed"


def test_a_job_state_reply_may_carry_the_size_of_the_result_as_an_integer():
    def job_state(**fields):
        return encode(SIGNER, new_header("job_state", reply_to=None, job="0" * 64, state="finished", **fields))

    assert decode(job_state(result_bytes=16_241_536), SIGNER, replies=True).header["result_bytes"] == 16_241_536
    assert "result_bytes" not in decode(job_state(), SIGNER, replies=True).header  # (optional within version 2)
    with pytest.raises(ProtocolError, match="'result_bytes': expected an integer") as info:
        decode(job_state(result_bytes="16 MB"), SIGNER, replies=True)
    assert info.value.code == "malformed"


def test_payload_rules_and_non_msgpack_headers():
    header = new_header("health", client="c1")
    with pytest.raises(ProtocolError, match="has no payload"):
        decode(encode(SIGNER, header, b"extra"), SIGNER)
    request, _ = _request_bytes()
    with pytest.raises(ProtocolError, match="needs a payload"):
        decode(encode(SIGNER, new_header("execute", client="c1", job=request.digest)), SIGNER)
    for header_bytes in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb(msgpack.ExtType(5, b"x"))):
        frames = [PROTOCOL, SIGNER.signature([PROTOCOL, header_bytes]), header_bytes]
        with pytest.raises(ProtocolError) as info:
            decode(frames, SIGNER)
        assert info.value.code == "malformed"


def test_payloads_must_match_their_job_ids():
    request, payload = _request_bytes()
    message = decode(_execute_frames(), SIGNER)
    assert parse_execute(message).digest == request.digest
    other, _ = _request_bytes(seed=1)
    with pytest.raises(ProtocolError, match="is not the digest of the request") as info:
        parse_execute(decode(_execute_frames(job=other.digest), SIGNER))
    assert info.value.code == "bad_request"
    with pytest.raises(ProtocolError, match="not an execution request"):
        parse_execute(decode(encode(SIGNER, new_header("execute", client="c", job="0" * 64), b"junk"), SIGNER))
    buffer = io.BytesIO()
    dg.save_network(request.network, buffer)
    network_bytes = buffer.getvalue()
    good = new_header("calibrate", client="c", job=calibration_job_id(3, network_bytes), seed=3)
    network, seed = parse_calibrate(decode(encode(SIGNER, good, network_bytes), SIGNER))
    assert seed == 3 and network.sizes == request.network.sizes
    wrong_seed = dict(good, seed=4)
    with pytest.raises(ProtocolError, match="does not match"):
        parse_calibrate(decode(encode(SIGNER, wrong_seed, network_bytes), SIGNER))


def test_a_payload_that_fails_to_load_in_any_way_is_a_bad_request(monkeypatch):
    """The payload parsers raise `ProtocolError` only, "bad_request" for a payload that cannot be
    read, whatever reading it raises (hostile bytes may reach code that raises no ValueError)."""
    import delgrad_hil._service as service

    def fail(*args, **kwargs):
        raise KeyError("values")

    execute = decode(_execute_frames(), SIGNER)
    with pytest.raises(ProtocolError, match=r"^the payload is not an execution request \('values'\)") as info:
        parse_execute(execute, unwrap_calibration=fail)
    assert info.value.code == "bad_request" and info.value.reply_to == execute.header["nonce"]
    network_bytes = io.BytesIO()
    dg.save_network(network_and_inputs(batch=1)[0], network_bytes)
    header = new_header("calibrate", client="c", job=calibration_job_id(3, network_bytes.getvalue()), seed=3)
    monkeypatch.setattr(service, "load_network", fail)
    with pytest.raises(ProtocolError, match=r"^the payload is not a network \('values'\)") as info:
        parse_calibrate(decode(encode(SIGNER, header, network_bytes.getvalue()), SIGNER))
    assert info.value.code == "bad_request"


def test_a_calibration_named_by_digest_only_and_not_held_is_unknown_and_a_calibrate_without_network_keeps_its_seed():
    """docs/hil-protocol.md: "a request naming one it does not hold ... gets `unknown_calibration`"
    (the client then sends it in full); a calibrate message may carry no network, only a seed."""
    network, inputs = network_and_inputs(batch=8)
    calibration = wrap(dg.Calibration("reference", {"chip": 1}, "key-1"))
    request = dg.ExecutionRequest(network, inputs, calibration, 0)
    header = new_header("execute", client="c", job=request.digest)
    message = decode(encode(SIGNER, header, request.to_bytes(include_calibration=False)), SIGNER)
    with pytest.raises(ProtocolError) as info:
        parse_execute(message)
    assert info.value.code == "unknown_calibration"
    assert parse_execute(message, calibrations={calibration.digest: calibration}).calibration == unwrap(calibration)
    header = new_header("calibrate", client="c", job=calibration_job_id(7, None), seed=7)
    assert parse_calibrate(decode(encode(SIGNER, header), SIGNER)) == (None, 7)


def _deflated(archive: bytes, extra_zeros: int = 0) -> bytes:
    """The same members, compressed, plus (if asked) a member of that many zero bytes."""
    import zipfile

    source, buffer = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        if extra_zeros:
            target.writestr("network.zzz.npy", b"\0" * extra_zeros)
    return buffer.getvalue()


def test_compressed_payloads_are_refused_before_they_are_expanded():
    """(an execute of 1 MB whose archive held a compressed member of 1 GiB of zeros under
    'network.' was expanded whole by the job-id check: 2.1 GB for the service, 4.6 s)"""
    request, payload = _request_bytes()
    bomb = _deflated(payload, extra_zeros=2**26)
    assert len(bomb) < 2**26 // 500
    message = decode(encode(SIGNER, new_header("execute", client="c", job=request.digest), bomb), SIGNER)
    with pytest.raises(ProtocolError, match="not a delgrad execution request as delgrad writes it \\(an uncompressed "
                                            "zip archive\\)") as info:
        parse_execute(message)
    assert info.value.code == "bad_request"
    buffer = io.BytesIO()
    dg.save_network(request.network, buffer)
    network_bytes = _deflated(buffer.getvalue())
    header = new_header("calibrate", client="c", job=calibration_job_id(3, network_bytes), seed=3)
    with pytest.raises(ProtocolError, match="not a delgrad network file as delgrad writes it"):
        parse_calibrate(decode(encode(SIGNER, header, network_bytes), SIGNER))
    assert dg.load_network(network_bytes).sizes == request.network.sizes  # (a compressed file is read elsewhere)
    with pytest.raises(dg.FileFormatError, match="not a delgrad network file as delgrad writes it"):
        dg.load_network(network_bytes, stored_only=True)


# ---------------------------------------------------------------------------- fuzzing
def _only_protocol_errors(frames, signer=SIGNER):
    """decode (and the payload parsers) either succeed or raise ProtocolError."""
    try:
        message = decode(frames, signer, max_message_bytes=2**20)
        if message.type == "execute":
            parse_execute(message)
        elif message.type == "calibrate":
            parse_calibrate(message)
    except ProtocolError as exc:
        assert exc.code in ("malformed", "unsupported_version", "bad_signature", "too_large", "bad_request")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_random_frames_are_protocol_errors(frames):
    _only_protocol_errors(frames)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_frames_are_refused(data):
    frames = _execute_frames()
    index = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[index])
    how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    position = data.draw(st.integers(0, max(0, len(frame) - 1)))
    if how == "flip" and frame:
        frame[position] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del frame[position:]
    else:
        frame[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    mutated = [*frames[:index], bytes(frame), *frames[index + 1:]]
    if mutated == frames:
        return
    with pytest.raises(ProtocolError):
        decode(mutated, SIGNER)


_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20)
                       | st.binary(max_size=20), lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["type", "nonce", "ts", "client", "job", "seed", "executions", "x"]),
                       _VALUES | st.sampled_from(["execute", "calibrate", "status", "hello", "health"]), max_size=8),
       st.none() | st.binary(max_size=400))
def test_signed_messages_with_random_headers_and_payloads_are_served_or_refused(header, payload):
    """Correctly signed garbage reaches the header checks and the payload parsers."""
    try:
        header_bytes = msgpack.packb(header, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return
    signed = [PROTOCOL, header_bytes] + ([] if payload is None else [payload])
    _only_protocol_errors([PROTOCOL, SIGNER.signature(signed), *signed[1:]])


# ---------------------------------------------------------------------------- tokens and replays
def test_tokens_come_from_the_argument_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(dg.InvalidValueError, match="no token: set \\$DELGRAD_HIL_TOKEN"):
        load_token()
    monkeypatch.setenv(TOKEN_ENV, "  from-the-environment-x  \n")
    assert load_token() == b"from-the-environment-x"
    path = write_token_file(tmp_path / "token")
    assert path.stat().st_mode & 0o077 == 0 and len(load_token(token_file=path)) == 64
    with pytest.raises(FileExistsError):
        write_token_file(path)
    (tmp_path / "short").write_text("tiny")
    with pytest.raises(dg.InvalidValueError, match="at least 16 characters") as info:
        load_token(token_file=tmp_path / "short")
    assert "tiny" not in str(info.value)
    with pytest.raises(dg.InvalidValueError, match="cannot read"):
        load_token(token_file=tmp_path / "missing")
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(dg.InvalidValueError, match="binary: not UTF-8 text"):
        load_token(token_file=tmp_path / "binary")
    monkeypatch.setenv(TOKEN_ENV, os.fsdecode(b"abcdefghijklmnopqrs\xff"))  # (as Python reads such bytes)
    with pytest.raises(dg.InvalidValueError, match=r"^\$DELGRAD_HIL_TOKEN: not UTF-8 text"):
        load_token()
    (tmp_path / "huge").write_text("x" * 5000)
    with pytest.raises(dg.InvalidValueError, match="huge: larger than 4096 bytes"):
        load_token(token_file=tmp_path / "huge")
    with pytest.raises(dg.InvalidValueError, match="token_file: expected a file path, got 3"):  # (a TypeError)
        load_token(token_file=3)
    with pytest.raises(dg.InvalidValueError, match="^token_file: expected a file path, got an empty one$"):
        load_token(token_file="")
    fifo = tmp_path / "fifo"  # (its open waited for a writer for ever: the client and the service hung)
    os.mkfifo(fifo)
    for odd in (fifo, "/dev/zero"):
        with pytest.raises(dg.InvalidValueError, match=f"token_file {odd}: not a regular file"):
            load_token(token_file=odd)
    shared = tmp_path / "shared"  # (readable by all: warned of, naming the file, its mode and the remedy)
    shared.write_text("a-token-of-sufficient-length\n")
    shared.chmod(0o644)
    with pytest.warns(UserWarning, match=r"token_file .*shared: other users may read it \(mode 644\).*chmod 600"):
        assert load_token(token_file=shared) == b"a-token-of-sufficient-length"
    shared.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_token(token_file=shared)
    # (a missing folder gave a raw "[Errno 2]"; /dev/null was "kept" as if it held a token)
    with pytest.raises(dg.InvalidValueError, match=r"the folder .*nodir does not exist"):
        write_token_file(tmp_path / "nodir" / "token")
    for odd in ("/dev/null", tmp_path):
        with pytest.raises(dg.InvalidValueError, match=f"^{odd} exists and is not a regular file; choose another"):
            write_token_file(odd)
    with pytest.raises(dg.InvalidValueError, match="t/ names a folder"):  # (a file t was written)
        write_token_file(f"{tmp_path}/t/")
    assert not (tmp_path / "t").exists()
    assert "hidden" in repr(Signer(b"secret-secret-secret")) and "secret" not in repr(Signer(b"secret-secret-secret"))


def test_the_replay_guard_refuses_seen_nonces_and_stale_or_future_times():
    now = [1000.0]
    guard = ReplayGuard(window_s=10.0, max_nonces=3, clock=lambda: now[0])
    assert guard.check(b"a" * 16, 1000.0) is None
    assert guard.check(b"a" * 16, 1000.0)[0] == "replayed"
    assert guard.check(b"b" * 16, 985.0)[1].startswith("sent 15.0 s behind the service's clock, "
                                                       "outside the 10 s window")
    assert guard.check(b"b" * 16, 1011.0)[1].startswith("sent 11.0 s ahead of the service's clock")  # (read "-11.0")
    assert guard.check(b"b" * 16, 1e308)[1].startswith("sent 1e+308 s ahead of the service's clock")  # (309 digits)
    assert guard.check(b"b" * 16, float("nan"))[1].startswith("sent with no valid time")
    assert guard.check(b"b" * 16, 1005.0) is None and guard.check(b"c" * 16, 999.0) is None
    assert guard.check(b"d" * 16, 1000.0)[0] == "busy"  # three nonces remembered
    now[0] = 1009.5  # "c" (sent at 999) has expired: room for one more
    assert guard.check(b"d" * 16, 1009.0) is None
    now[0] = 1016.0  # everything sent before 1006 has expired: the nonces are forgotten
    assert guard.check(b"e" * 16, 1016.0) is None and len(guard._expiry) == 2


def test_the_replay_guard_takes_a_message_exactly_its_window_away_and_still_knows_its_nonce_then():
    """docs/hil-protocol.md: `ts` "within `replay_window_s`" of the receiver's clock and the nonce
    "not seen within the window": a difference of exactly the window is taken, and a message
    repeated when its send time is exactly the window behind is still refused as a replay."""
    now = [1000.0]
    guard = ReplayGuard(window_s=10.0, clock=lambda: now[0])
    assert guard.check(b"a" * 16, 990.0) is None  # 10 s behind
    assert guard.check(b"b" * 16, 1010.0) is None  # 10 s ahead
    assert guard.check(b"c" * 16, 1000.0) is None
    now[0] = 1010.0  # "c" (sent at 1000) is still within the window: its nonce must not be forgotten yet
    assert guard.check(b"c" * 16, 1000.0)[0] == "replayed"


def test_a_token_given_goes_before_a_token_file_whose_path_may_start_with_a_tilde(tmp_path, monkeypatch):
    """load_token: "`token` if given, else the contents of `token_file`"; docs/hil.md gives
    `token_file=~/.delgrad-hil-token`.  A token that is no string is an InvalidValueError."""
    path = tmp_path / "token"
    path.write_text("from-the-file-of-enough-length\n")
    path.chmod(0o600)
    assert load_token("from-the-argument-xx", token_file=path) == b"from-the-argument-xx"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_token(token_file="~/token") == b"from-the-file-of-enough-length"
    with pytest.raises(dg.InvalidValueError, match="^token: expected a string, got int$"):
        load_token(12345678901234567890)

# ---------------------------------------------------------------------------- scheduler
def _outcome(name, size=0, keep=True):
    return Outcome({"type": "result", "job": name}, b"x" * size, keep)


def _run_all(scheduler):
    order = []
    while scheduler._queues:
        job = scheduler.take()
        order.append((job.client, job.job_id))
        scheduler.finish(job, _outcome(job.job_id))
    return order


def test_clients_are_served_round_robin_and_duplicates_join():
    scheduler = Scheduler()
    for client, jobs in (("a", "123"), ("b", "45"), ("c", "6")):
        for job in jobs:
            assert scheduler.submit(client, job, "execute", None, (client, job)) is None
    assert scheduler.submit("a", "1", "execute", None, ("a", "again")) is None  # joins the queued job
    order = _run_all(scheduler)
    assert order == [("a", "1"), ("b", "4"), ("c", "6"), ("a", "2"), ("b", "5"), ("a", "3")]
    finished = {job.job_id: job for job in scheduler.completed()}
    assert finished["1"].waiters == [("a", "1"), ("a", "again")]
    assert scheduler.submit("a", "1", "execute", None, ("a", "late")).header["job"] == "1"  # from the cache
    assert scheduler.submit("b", "1", "execute", None, ("b", "1")) is None  # another client: its own job
    status = scheduler.status(executions=True)
    assert status["executed"] == 6 and status["cache_hits"] == 1 and status["joined"] == 1
    assert status["executions"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1}


def test_queue_limits_cache_bounds_and_outcomes_not_kept():
    scheduler = Scheduler(max_queued_per_client=2, max_queued=3, cache_entries=2, cache_bytes=100)
    scheduler.submit("a", "1", "execute", None, None)
    scheduler.submit("a", "2", "execute", None, None)
    with pytest.raises(QueueFull):
        scheduler.submit("a", "3", "execute", None, None)
    scheduler.submit("b", "4", "execute", None, None)
    with pytest.raises(QueueFull):
        scheduler.submit("c", "5", "execute", None, None)
    for job_id, size, keep in (("1", 10, True), ("4", 10, False), ("2", 95, True)):
        job = scheduler.take()
        assert job.job_id == job_id
        scheduler.finish(job, _outcome(job_id, size, keep))
    scheduler.completed()
    assert scheduler.status()["cache"] == {"entries": 1, "bytes": 95}  # "1" evicted by bytes, "4" not kept
    assert scheduler.submit("b", "4", "execute", None, None) is None  # runs again
    assert scheduler.submit("a", "2", "execute", None, None) is not None
    rejected = scheduler.reject_queued()
    assert [job.job_id for job in rejected] == ["4"] and scheduler.status()["queues"] == {}
    scheduler.close()
    assert scheduler.take() is None


def test_a_cached_outcome_holds_no_request_and_a_status_lists_the_latest_executions():
    """(the cache kept each job's request, network and inputs, beside the result it counted: a
    service with --cache-mb 1 grew by 300 MB; a status of more than about 980 job ids was above
    the header limit and failed as 'corrupted')"""
    scheduler = Scheduler(max_queued_per_client=10_000, max_queued=10_000)
    n_jobs = EXECUTIONS_LISTED + 100
    for k in range(n_jobs):
        scheduler.submit("a", f"{k:064x}", "execute", np.zeros(1000), ("a", k))
    _run_all(scheduler)
    assert all(job.work is None for job in scheduler._cache.values())
    status = scheduler.status(executions=True)
    assert status["executions_counted"] == n_jobs
    assert list(status["executions"]) == [f"{k:064x}" for k in range(n_jobs - 1, n_jobs - 1 - EXECUTIONS_LISTED, -1)]
    assert len(msgpack.packb(new_header("status", info=status))) < MAX_HEADER_BYTES / 2


# ---------------------------------------------------------------------------- calibration, faults
def test_a_wrapped_calibration_unwraps_to_the_same_digest():
    device = dg.Calibration("bss2-emulator", {"chip": 3, "ok": [True]}, "key-1",
                            {"threshold": np.arange(4.0), "flags": np.array([True, False])})
    wrapped = wrap(device)
    assert wrapped.backend == "mock-hil" and wrapped.digest != device.digest
    restored = unwrap(dg.Calibration.from_bytes(wrapped.to_bytes()))
    assert restored == device and restored.digest == device.digest
    assert unwrap(device) is device and unwrap(None) is None
    with pytest.raises(dg.InvalidValueError, match="values\\['device'\\]"):
        unwrap(dg.Calibration("mock-hil", {"device": 3}, "k"))


def test_fault_plans_are_checked_and_their_decisions_repeat_with_the_seed():
    with pytest.raises(dg.InvalidValueError, match="faults.drop_fraction: expected a number from 0 to 1"):
        FaultPlan.from_dict({"drop_fraction": 1.5})
    with pytest.raises(dg.InvalidValueError, match="unknown setting\\(s\\) dropping"):
        FaultPlan.from_dict({"dropping": 0.1})
    plan = FaultPlan(drop_fraction=0.3, corrupt_fraction=0.3, seed=4)
    assert plan.arguments() == ["--drop-fraction", "0.3", "--corrupt-fraction", "0.3", "--fault-seed", "4"]
    fates = [[faults.reply_fate() for _ in range(200)] for faults in (Faults(plan), Faults(plan))]
    assert fates[0] == fates[1] and {"drop", "corrupt", "send"} == set(fates[0])
    assert 40 < fates[0].count("drop") < 80
    frames = [b"abc", b"defg"]
    assert Faults(plan).corrupted(frames) != frames and not FaultPlan().active


# ---------------------------------------------------------------------------- limits as documented
def test_a_header_of_exactly_64_kib_is_read_and_one_byte_more_is_too_large():
    """docs/hil-protocol.md: the header is "at most 64 KiB" (65536 bytes), checked before the signature."""
    def health_frames(header_size):
        header = new_header("health", client="c1", pad="")
        header["pad"] = "x" * (header_size - len(msgpack.packb(header, use_bin_type=True)))
        header_bytes = msgpack.packb(header, use_bin_type=True)
        while len(header_bytes) != header_size:  # (the string's length prefix grows at 256 and 65536)
            header["pad"] = header["pad"][:-1]
            header_bytes = msgpack.packb(header, use_bin_type=True)
        return encode(SIGNER, header)

    assert len(health_frames(65536)[2]) == 65536
    assert decode(health_frames(65536), SIGNER).type == "health"
    with pytest.raises(ProtocolError, match="header of 65537 bytes is above 65536 bytes") as info:
        decode(health_frames(65537), SIGNER)
    assert info.value.code == "too_large"


def test_the_signature_is_hmac_sha256_over_length_prefixed_frames_0_2_and_3():
    """docs/hil-protocol.md: HMAC-SHA256 keyed with the token over frames 0, 2 and 3, each preceded
    by its length as an 8-byte big-endian integer; without a payload over frames 0 and 2 only."""
    import hashlib
    import hmac

    def by_hand(*frames):
        text = b"".join(len(frame).to_bytes(8, "big") + frame for frame in frames)
        return hmac.new(TOKEN.encode(), text, hashlib.sha256).digest()

    frames = _execute_frames()
    assert frames[1] == by_hand(frames[0], frames[2], frames[3])
    header = new_header("health", client="c1")
    frames = encode(SIGNER, header)
    assert len(frames) == 3 and frames[1] == by_hand(frames[0], frames[2])


def test_a_calibrate_job_id_is_the_sha256_of_the_documented_text():
    """docs/hil-protocol.md: SHA-256 of b"delgrad-hil calibrate\\n", the JSON {"network": ..., "seed": ...}
    with sorted keys and Python's separators, b"\\n" and the network bytes (if any)."""
    import hashlib

    prefix = b"delgrad-hil calibrate\n"
    assert calibration_job_id(0, None) == hashlib.sha256(prefix + b'{"network": false, "seed": 0}\n').hexdigest()
    assert calibration_job_id(None, None) == hashlib.sha256(prefix + b'{"network": false, "seed": null}\n').hexdigest()
    network = b"PK\x05\x06network bytes"
    assert calibration_job_id(7, network) == \
        hashlib.sha256(prefix + b'{"network": true, "seed": 7}\n' + network).hexdigest()


@pytest.mark.parametrize(("seed", "valid"), [(0, True), (2**63 - 1, True), (2**63, False), (-1, False), (None, True)],
                         ids=["0", "max-seed", "max-seed-plus-1", "negative", "none"])
def test_a_calibrate_seed_may_be_any_integer_from_0_to_2_to_the_63_minus_1(seed, valid):
    header = new_header("calibrate", client="c1", job=calibration_job_id(seed, None), seed=seed)
    frames = encode(SIGNER, header)
    if valid:
        assert decode(frames, SIGNER).header["seed"] == seed
    else:
        with pytest.raises(ProtocolError,
                           match="'seed': expected None or an integer in \\[0, 2\\*\\*63 - 1\\]") as info:
            decode(frames, SIGNER)
        assert info.value.code == "malformed"


@pytest.mark.parametrize(("expires_s", "valid"), [(0, True), (0.0, True), (2.5, True), (-0.5, False),
                                                  (float("inf"), False), (True, False)],
                         ids=["int-0", "float-0", "positive", "negative", "inf", "bool"])
def test_an_expires_s_of_0_or_more_seconds_is_valid(expires_s, valid):
    """docs/hil-protocol.md: `expires_s` (optional, seconds >= 0)."""
    frames = _execute_frames(expires_s=expires_s)
    if valid:
        assert decode(frames, SIGNER).header["expires_s"] == expires_s
    else:
        with pytest.raises(ProtocolError, match="'expires_s': expected a number of seconds >= 0"):
            decode(frames, SIGNER)


def test_an_error_message_of_exactly_2000_characters_is_sent_whole():
    """docs/hil-protocol.md: "at most 2,000 characters of the text, then '... (cut: N characters in all)'"."""
    assert error_fields("bad_request", "m" * 2000)["message"] == "m" * 2000
    assert error_fields("bad_request", "m" * 2001)["message"] == "m" * 2000 + "... (cut: 2,001 characters in all)"


def test_the_largest_reply_a_client_takes_is_4_times_the_limit_plus_header_signature_and_protocol():
    """docs/hil-protocol.md: a reply "up to 4 times the limit plus 64 KiB for its header plus the
    protocol and signature frames"."""
    from delgrad_hil._protocol import reply_limit

    assert reply_limit(2**20) == 4 * 2**20 + 65536 + 32 + len(b"delgrad-hil/2")
    assert reply_limit(128 * 2**20) == 512 * 2**20 + 65536 + 32 + 13


def test_a_token_needs_16_characters_without_the_surrounding_whitespace(tmp_path, monkeypatch):
    assert load_token("s" * 16) == b"s" * 16
    assert load_token("  " + "s" * 16 + "\n") == b"s" * 16
    for short in ("s" * 15, " " + "s" * 15 + " \n"):
        with pytest.raises(dg.InvalidValueError, match="at least 16 characters"):
            load_token(short)


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o604, 0o602, 0o644], ids=oct)
def test_a_token_file_other_users_may_read_or_write_is_warned_of(tmp_path, mode):
    """docs/hil.md: "A token file that other users may read or write (e.g. mode 0644) is accepted
    with a warning naming the file and its mode" (the users of the file's group are other users too)."""
    path = tmp_path / "token"
    path.write_text("a-token-of-sufficient-length\n")
    path.chmod(mode)
    with pytest.warns(UserWarning, match=f"other users may read it \\(mode {mode:03o}\\)"):
        assert load_token(token_file=path) == b"a-token-of-sufficient-length"


def test_a_token_file_of_4096_bytes_is_read_and_one_of_4097_is_not(tmp_path):
    path = tmp_path / "token"
    path.write_text("t" * 4095 + "\n")
    path.chmod(0o600)
    assert load_token(token_file=path) == b"t" * 4095
    path.write_text("t" * 4096 + "\n")
    with pytest.raises(dg.InvalidValueError, match="larger than 4096 bytes"):
        load_token(token_file=path)


def test_the_cache_lets_the_least_recently_used_outcome_go_first():
    """A cache hit makes an outcome the most recently used (docs/hil-protocol.md: "the cache keeps
    the least recently used outcomes up to a number of entries and bytes" goes first)."""
    scheduler = Scheduler(cache_entries=2)
    for job_id in ("1", "2"):
        scheduler.submit("a", job_id, "execute", None, None)
    _run_all(scheduler)
    assert scheduler.submit("a", "1", "execute", None, None) is not None  # a hit: "2" is now the least recent
    scheduler.submit("a", "3", "execute", None, None)
    _run_all(scheduler)
    assert scheduler.state("a", "1")[0] == "finished" and scheduler.state("a", "3")[0] == "finished"
    assert scheduler.state("a", "2")[0] == "unknown"


def test_outcomes_of_exactly_cache_bytes_stay_cached():
    scheduler = Scheduler(cache_bytes=100)
    for job_id in ("1", "2"):
        scheduler.submit("a", job_id, "execute", None, None)
    job = scheduler.take()
    scheduler.finish(job, _outcome("1", 40))
    job = scheduler.take()
    scheduler.finish(job, _outcome("2", 60))
    assert scheduler.status()["cache"] == {"entries": 2, "bytes": 100}
    scheduler.submit("a", "3", "execute", None, None)
    scheduler.finish(scheduler.take(), _outcome("3", 1))  # one byte above: the least recent ("1") goes
    assert scheduler.status()["cache"] == {"entries": 2, "bytes": 61} and scheduler.state("a", "1")[0] == "unknown"


def test_a_queued_job_is_dropped_only_when_every_message_waiting_for_it_has_expired():
    """docs/hil-protocol.md: "A job still queued when every message waiting for it has expired is
    dropped ...  A message without it waits for ever, and keeps its job." """
    import time

    now = time.monotonic()
    scheduler = Scheduler()
    scheduler.submit("a", "forever-then-gone", "execute", None, ("a", 1))  # (waits for ever)
    scheduler.submit("a", "forever-then-gone", "execute", None, ("a", 2), expires=now - 1)
    scheduler.submit("a", "later-then-gone", "execute", None, ("a", 3), expires=now + 3600)
    scheduler.submit("a", "later-then-gone", "execute", None, ("a", 4), expires=now - 1)
    scheduler.submit("a", "gone-then-forever", "execute", None, ("a", 5), expires=now - 1)
    scheduler.submit("a", "gone-then-forever", "execute", None, ("a", 6))
    scheduler.submit("a", "all-gone", "execute", None, ("a", 7), expires=now - 2)
    scheduler.submit("a", "all-gone", "execute", None, ("a", 8), expires=now - 1)
    taken = []
    while (job := scheduler.take()) is not None:
        taken.append(job.job_id)
        scheduler.finish(job, _outcome(job.job_id))
    assert taken == ["forever-then-gone", "later-then-gone", "gone-then-forever"]
    assert scheduler.status()["expired"] == 1 and scheduler.state("a", "all-gone")[0] == "unknown"


def test_each_reply_fate_takes_two_draws_of_the_seeded_generator():
    """delgrad_hil/_faults.py: "drop", "corrupt" or "send" from two draws each, always (so a
    dropped reply does not shift the decisions of the replies after it): the first draw below
    drop_fraction drops, else the second below corrupt_fraction corrupts."""
    import random

    plan = FaultPlan(drop_fraction=0.5, corrupt_fraction=0.5, seed=11)
    generator, expected = random.Random(11), []
    for _ in range(100):
        drop, corrupt = generator.random(), generator.random()
        expected.append("drop" if drop < 0.5 else "corrupt" if corrupt < 0.5 else "send")
    faults = Faults(plan)
    assert [faults.reply_fate() for _ in range(100)] == expected


def test_each_fault_fraction_alone_decides_its_fate():
    """docs/hil.md, "Faults": `drop_fraction` of job replies is never sent, `corrupt_fraction` gets
    a byte flipped, none without a fault (a dropped reply is not also corrupted).  (Corruption
    decided by the drop fraction went unnoticed with both fractions equal.)"""
    for plan, fate in ((FaultPlan(corrupt_fraction=1.0), "corrupt"), (FaultPlan(drop_fraction=1.0), "drop"),
                       (FaultPlan(drop_fraction=1.0, corrupt_fraction=1.0), "drop"), (FaultPlan(seed=5), "send")):
        faults = Faults(plan)
        assert {faults.reply_fate() for _ in range(50)} == {fate}, plan


def test_a_corrupted_reply_has_one_byte_of_one_frame_flipped_and_any_frame_may_be_the_one():
    """docs/hil.md, "Faults": a corrupted job reply "gets one byte flipped after signing" (all
    eight bits: the complement); the frame hit is the generator's choice, the last one too, and the
    other frames, their number and lengths stay as they were."""
    frames = [b"\x00\x01\x02", b"ab", b"a header", b"the payload"]
    hit = set()
    for seed in range(40):
        corrupted = Faults(FaultPlan(corrupt_fraction=1.0, seed=seed)).corrupted(frames)
        assert [len(frame) for frame in corrupted] == [len(frame) for frame in frames]
        changed = [index for index, (sent, kept) in enumerate(zip(corrupted, frames)) if sent != kept]
        assert len(changed) == 1, corrupted
        sent, kept = corrupted[changed[0]], frames[changed[0]]
        assert [a ^ b for a, b in zip(sent, kept) if a != b] == [0xFF]
        hit.add(changed[0])
    assert hit == set(range(len(frames)))


def test_a_corrupted_empty_frame_is_no_longer_empty():
    """delgrad_hil/_faults.py: a frame with no byte to flip becomes one byte (b"\\xff"): a reply
    chosen for corruption is never sent as it was signed."""
    assert Faults(FaultPlan(corrupt_fraction=1.0)).corrupted([b""]) == [b"\xff"]


@pytest.mark.parametrize(("field", "value"), [("drop_fraction", 1.5), ("corrupt_fraction", 1.5),
                                              ("busy_fraction", -0.1), ("seed", -1), ("seed", 1.5),
                                              ("exit_after_jobs", 0)])
def test_each_fault_setting_out_of_its_range_is_refused_naming_it(field, value):
    """docs/hil.md, "Faults": fractions of job replies or requests (0 to 1), K jobs, the seed of
    the decisions: the plan refuses what `delgrad hil serve` refuses (`--fault-seed` takes
    integers from 0), naming the `faults` key.  (Only `drop_fraction` of the fractions was
    tested.)"""
    with pytest.raises(dg.InvalidValueError, match=rf"^faults\.{field}: expected"):
        FaultPlan.from_dict({field: value})


def test_a_fault_plan_gives_the_serve_option_of_every_fault_it_sets():
    """docs/hil.md, "Faults": each `faults` key has a `delgrad hil serve` option; a local
    service is started with the options of its plan, so none may be left out (the latency
    fault too), and a plan of defaults gives none."""
    plan = FaultPlan(latency_s=0.25, drop_fraction=0.1, corrupt_fraction=0.2, busy_fraction=0.3, exit_after_jobs=7,
                     seed=9)
    assert plan.arguments() == ["--latency-s", "0.25", "--drop-fraction", "0.1", "--corrupt-fraction", "0.2",
                                "--busy-fraction", "0.3", "--exit-after-jobs", "7", "--fault-seed", "9"]
    assert FaultPlan().arguments() == []


def test_an_outcome_not_kept_takes_no_room_in_the_cache():
    """docs/hil-protocol.md: "an error the device marks retryable is not kept": it neither counts
    in the cache's entries and bytes nor pushes a kept outcome out."""
    scheduler = Scheduler(cache_entries=1)
    scheduler.submit("a", "kept", "execute", None, None)
    scheduler.submit("a", "retry-me", "execute", None, None)
    scheduler.finish(scheduler.take(), _outcome("kept", 10))
    scheduler.finish(scheduler.take(), _outcome("retry-me", 20, keep=False))
    scheduler.completed()
    assert scheduler.status()["cache"] == {"entries": 1, "bytes": 10}
    assert scheduler.state("a", "kept") == ("finished", 10) and scheduler.state("a", "retry-me") == ("unknown", None)


def test_a_job_expires_only_once_its_time_has_passed_and_never_without_one():
    """docs/hil-protocol.md: the sender waits "at most this long": at its expiry time a job is still
    waited for, an instant later it is not; a job without one never expires, whoever else joins."""
    job = Job("a", "1", "execute", None, expires=5.0)
    assert not job.expired(4.0) and not job.expired(5.0) and job.expired(5.001)
    assert not Job("a", "2", "execute", None).expired(1e12)


def test_a_probe_sees_a_job_queued_then_running_then_finished_with_the_size_of_its_result():
    """docs/hil-protocol.md (`job_state`): `running` once the device took the job; `finished` with
    the size of the reply's payload, none for an error."""
    scheduler = Scheduler()
    for job_id in ("result", "error"):
        scheduler.submit("a", job_id, "execute", None, None)
    job = scheduler.take()
    assert scheduler.state("a", "result") == ("running", None) and scheduler.state("a", "error") == ("queued", None)
    scheduler.finish(job, _outcome("result", 7))
    scheduler.finish(scheduler.take(), Outcome(error_fields("device_error", "no")))
    assert scheduler.state("a", "result") == ("finished", 7) and scheduler.state("a", "error") == ("finished", None)


def test_a_shutdown_rejects_every_queued_job_and_a_closed_scheduler_hands_out_no_job():
    """The queued jobs of every client are rejected (their waiters are owed an answer); the running
    one stays; after `close` nothing more is taken, even with jobs queued."""
    scheduler = Scheduler()
    for client, job_id in (("a", "1"), ("a", "2"), ("a", "3"), ("b", "4")):
        scheduler.submit(client, job_id, "execute", None, (client, job_id))
    running = scheduler.take()
    assert sorted(job.job_id for job in scheduler.reject_queued()) == ["2", "3", "4"]
    assert scheduler.state("a", "2")[0] == "unknown" and scheduler.state("a", "1")[0] == "running"
    scheduler.submit("b", "5", "execute", None, ("b", "5"))
    scheduler.close()
    assert scheduler.closed and scheduler.take() is None and scheduler.state("b", "5")[0] == "queued"
    assert scheduler.running == (running,)


def test_the_status_names_the_running_and_the_next_job_and_the_most_jobs_queued_at_once():
    """docs/hil-protocol.md (`status`): `running` and `next` (client, job, kind), the cache counts
    finished outcomes only, `most_queued` is the most jobs that waited at once."""
    scheduler = Scheduler()
    for client, job_id, kind in (("a", "1", "execute"), ("b", "2", "calibrate"), ("a", "3", "execute")):
        scheduler.submit(client, job_id, kind, None, None)
    status = scheduler.status()
    assert status["running"] is None and status["next"] is None and status["most_queued"] == 3
    first, _ = scheduler.take(), scheduler.take()
    status = scheduler.status()
    assert status["running"] == {"client": "a", "job": "1", "kind": "execute"}
    assert status["next"] == {"client": "b", "job": "2", "kind": "calibrate"}
    scheduler.finish(first, _outcome("1", 5))
    scheduler.submit("c", "4", "execute", None, None)  # two queued now: the most stays 3
    status = scheduler.status()
    assert status["cache"] == {"entries": 1, "bytes": 5} and status["most_queued"] == 3
    assert status["running"] == {"client": "b", "job": "2", "kind": "calibrate"} and status["next"] is None


def test_an_expired_job_is_passed_over_for_the_next_one_queued():
    scheduler = Scheduler()
    scheduler.submit("a", "gone", "execute", None, None, expires=0.0)  # (monotonic time 0: long past)
    scheduler.submit("a", "waited-for", "execute", None, None)
    assert scheduler.take().job_id == "waited-for" and scheduler.status()["expired"] == 1


def test_only_jobs_that_ran_count_as_executed_or_calibrated():
    """A job answered without running (lost with the device process, refused after crashes) counts
    neither in `executed`/`calibrated` nor in the executions of its job id."""
    scheduler = Scheduler()
    for job_id, kind in (("e", "execute"), ("c", "calibrate"), ("lost", "execute")):
        scheduler.submit("a", job_id, kind, None, None)
    for ran in (True, True, False):
        job = scheduler.take()
        scheduler.finish(job, _outcome(job.job_id), ran=ran)
    status = scheduler.status(executions=True)
    assert status["executed"] == 1 and status["calibrated"] == 1 and status["executions"] == {"c": 1, "e": 1}


def test_a_status_lists_the_latest_20_crashing_job_ids_and_counts_each_id_once():
    """docs/hil-protocol.md (`status`): `crashed_jobs` (job id -> how often the device process died
    running it, the latest 20, most recent first) and `crashed_jobs_counted` (job ids)."""
    scheduler = Scheduler()
    for k in range(25):
        assert scheduler.record_crash(str(k)) == 1
    assert scheduler.record_crash("0") == 2  # the oldest crashes again: now the latest
    status = scheduler.status()
    assert list(status["crashed_jobs"].items()) == [("0", 2)] + [(str(k), 1) for k in range(24, 5, -1)]
    assert status["crashed_jobs_counted"] == 25
    assert scheduler.crash_count("0") == 2 and scheduler.crash_count("24") == 1 and scheduler.crash_count("x") == 0


def test_the_least_recently_counted_job_ids_are_forgotten_first():
    """`max_counted_jobs` bounds the job ids counted for executions and for crashes; a job id that
    runs (or crashes) again is the most recent one."""
    scheduler = Scheduler(max_counted_jobs=3)
    for client, job_id in (("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("a", "4")):  # ("b", "1"): runs again
        scheduler.submit(client, job_id, "execute", None, None)
        scheduler.finish(scheduler.take(), _outcome(job_id))
        scheduler.record_crash(job_id)
    status = scheduler.status(executions=True)
    assert list(status["executions"].items()) == [("4", 1), ("1", 2), ("3", 1)] and status["executions_counted"] == 3
    assert list(status["crashed_jobs"].items()) == [("4", 1), ("1", 2), ("3", 1)]
    assert status["crashed_jobs_counted"] == 3


@pytest.mark.parametrize("error_class", ["BackendError", "BackendUnavailable", "ExecutionTimeout", "InvalidValueError",
                                         "UnsupportedNetworkError", "SomethingElse"])
@pytest.mark.parametrize("retryable", [True, False])
def test_a_device_error_reply_is_retryable_as_the_device_said(error_class, retryable):
    """docs/hil-protocol.md: `device_error` is retryable as "the device's" flag says, whatever the
    error class would be by default."""
    from delgrad_hil._protocol import device_error

    fields = error_fields("device_error", "the device said no", retryable=retryable, error_class=error_class,
                          capability="delays" if error_class == "UnsupportedNetworkError" else None)
    error = device_error(fields, "the service at x: the device said no")
    assert error.retryable is retryable
    assert type(error).__name__ == (error_class if error_class != "SomethingElse" else "BackendError")


def _members(payload: bytes) -> dict:
    """The arrays of a payload, read with zipfile and numpy only (as a client without delgrad would)."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        return {info.filename.removesuffix(".npy"): np.load(io.BytesIO(archive.read(info)), allow_pickle=False)
                for info in archive.infolist()}


def _documented_digest(document: dict, *array_sets: dict) -> str:
    """docs/hil-protocol.md, "Payload bytes": the JSON text, then each set's arrays in name order."""
    import hashlib
    import json

    hasher = hashlib.sha256(json.dumps(document, sort_keys=True).encode())
    for arrays in array_sets:
        for name in sorted(arrays):
            array = arrays[name] + 0.0 if arrays[name].dtype.kind == "f" else arrays[name]
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            hasher.update(f"\n{name}|{array.dtype.str}|{array.shape}\n".encode() + array.tobytes())
    return hasher.hexdigest()


def test_the_payload_bytes_and_digests_are_as_the_protocol_document_says():
    """A client in another language has only the document: the members of an execute request, a
    calibration and a result, and the job id and calibration digest computed from them as it says."""
    import json

    network, inputs = network_and_inputs(sizes=(4, 5, 3), kind="axonal", batch=6)
    inputs[0, 1] = np.inf
    calibration = dg.Calibration("reference", {"gain": [1, 2]}, "key", {"offsets": np.array([-0.0, 0.5])})
    request = dg.ExecutionRequest(network, inputs, calibration, 7)
    members = _members(request.to_bytes())
    layer_members = {f"layers.{i}.{part}" for i in range(2) for part in ("weights", "delays", "neuron.threshold",
                                                                          "neuron.tau_m", "neuron.tau_s")}
    assert set(members) == {f"network.{name}" for name in {"network.json", *layer_members}} | {
        "input_spike_times", "request.json", "calibration.calibration.json", "calibration.calibration.digest",
        "calibration.calibration.arrays.offsets"}
    document = json.loads(members["request.json"].item())
    assert document == {"format": "delgrad-request", "version": 1, "seed": 7, "calibration": calibration.digest}
    calibration_document = json.loads(members["calibration.calibration.json"].item())
    assert calibration_document == {"format": "delgrad-calibration", "version": 1, "backend": "reference",
                                    "cache_key": "key", "values": {"gain": [1, 2]}}
    assert _documented_digest(calibration_document, {"offsets": members["calibration.calibration.arrays.offsets"]}) \
        == calibration.digest == json.loads(members["calibration.calibration.digest"].item())["sha256"]
    network_arrays = {name.removeprefix("network."): array for name, array in members.items()
                      if name.startswith("network.")}
    assert _documented_digest(document, network_arrays, {"input_spike_times": members["input_spike_times"]}) \
        == request.digest
    assert members["input_spike_times"].dtype == np.float64 and np.isinf(members["input_spike_times"][0, 1])
    result = dg.ExecutionResult(dg.forward(network, inputs), {"chip": 3})
    result_members = _members(result.to_bytes())
    assert set(result_members) == {"layer_spike_times.0", "layer_spike_times.1", "result.json"}
    assert json.loads(result_members["result.json"].item()) == {"format": "delgrad-result", "version": 1,
                                                                "n_layers": 2, "arrival_layers": None,
                                                                "metadata": {"chip": 3}}
