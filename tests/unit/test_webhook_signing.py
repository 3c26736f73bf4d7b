"""Standard Webhooks v1 signatures: the spec's vectors, and an independent verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from rdev.adapters.webhooks.signing import (
    WebhookVerificationError,
    new_secret,
    secret_key,
    sign,
    signature_headers,
    verify,
)

# docs/webhooks.md test vectors: A (ours) and B (the Standard Webhooks library tests).
VECTOR_A = (
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "msg_build_0001",
    1700000000,
    b'{"type":"build.finished","timestamp":"2023-11-14T22:13:20Z",'
    b'"data":{"project":"demo","pipeline":42,"status":"success"}}',
    "v1,GP2SQtJ/bYeIgbPzCZzPlYzQLu+UNZ09dLI7/W8ZNw0=",
)
VECTOR_B = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    b'{"test": 2432232314}',
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
)


def independent_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Written from the spec text only (no rdev code): any v1 signature matching wins."""
    key = base64.b64decode(secret.split("_", 1)[1] + "==")
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = hmac.new(key, content, hashlib.sha256).digest()
    for part in headers["webhook-signature"].split():
        version, sig = part.split(",", 1)
        if version == "v1" and hmac.compare_digest(base64.b64decode(sig), expected):
            return True
    return False


@pytest.mark.parametrize("vector", [VECTOR_A, VECTOR_B], ids=["A", "B"])
def test_signer_reproduces_the_spec_vectors(vector: tuple) -> None:
    secret, msg_id, ts, body, expected = vector
    assert sign(secret, msg_id, ts, body) == expected


@pytest.mark.parametrize("vector", [VECTOR_A, VECTOR_B], ids=["A", "B"])
def test_verify_accepts_the_spec_vectors_at_their_time(vector: tuple) -> None:
    secret, msg_id, ts, body, expected = vector
    headers = {"Webhook-Id": msg_id, "Webhook-Timestamp": str(ts), "Webhook-Signature": expected}
    verify(secret, headers, body, now=lambda: ts + 10)


def test_vector_a_hmac_hex_matches_the_fact_sheet() -> None:
    secret, msg_id, ts, body, _ = VECTOR_A
    mac = hmac.new(secret_key(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
    assert mac.hexdigest() == "18fd9242d27f6d878881b3f3099ccf958cd02eef94359d3d74b23bfd6f19370d"


def test_independent_verifier_accepts_our_signatures_with_a_fresh_secret() -> None:
    secret = new_secret()
    body = b'{"type":"build.completed","data":{"x":"\xc3\xa9 and spaces "}}'
    headers = signature_headers(secret, "msg_abc123", 1_800_000_000, body)
    assert independent_verify(secret, headers, body)
    assert not independent_verify(secret, headers, body + b" ")
    assert not independent_verify(new_secret(), headers, body)


def test_new_secret_is_whsec_prefixed_base64_of_32_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"), validate=True)) == 32


def test_verify_rejects_a_tampered_body_and_a_wrong_secret() -> None:
    secret, msg_id, ts, body, sig = VECTOR_B
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret, headers, body.replace(b"2", b"3"), now=lambda: ts)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(new_secret(), headers, body, now=lambda: ts)


def test_verify_accepts_any_matching_signature_among_several_and_skips_unknown_versions() -> None:
    secret, msg_id, ts, body, sig = VECTOR_B
    old = sign(new_secret(), msg_id, ts, body)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": f"v1a,bm90LWVkMjU1MTk= {old} {sig}",
    }
    verify(secret, headers, body, now=lambda: ts)


def test_verify_enforces_the_timestamp_tolerance_both_ways() -> None:
    secret, msg_id, ts, body, sig = VECTOR_B
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    verify(secret, headers, body, now=lambda: ts + 300)
    verify(secret, headers, body, now=lambda: ts - 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, headers, body, now=lambda: ts + 301)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(secret, headers, body, now=lambda: ts - 301)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_rejects_a_missing_header(missing: str) -> None:
    secret, msg_id, ts, body, sig = VECTOR_B
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=missing):
        verify(secret, headers, body, now=lambda: ts)


@pytest.mark.parametrize("bad_id", ["", "msg.1", "msg 1"])
def test_sign_refuses_message_ids_the_spec_forbids(bad_id: str) -> None:
    with pytest.raises(ValueError):
        sign(new_secret(), bad_id, 1, b"{}")


@pytest.mark.parametrize("bad_secret", ["", "whsec_", "whsec_!!!not base64!!!"])
def test_unusable_secrets_are_refused_without_echoing_them(bad_secret: str) -> None:
    with pytest.raises(ValueError) as info:
        sign(bad_secret, "msg_1", 1, b"{}")
    assert "not base64!!!" not in str(info.value)
