"""Distribution's event shape, and the HMAC signature a receiver checks."""

from __future__ import annotations

import hashlib
import hmac
import json

from registry.events.envelope import envelope, make_event, signature, verify_signature


def test_an_event_has_distributions_fields_and_drops_empty_ones() -> None:
    event = make_event(
        "push",
        {"mediaType": "m", "size": 3, "digest": "sha256:ab", "repository": "r", "tag": None},
        {"id": "req", "addr": "1.2.3.4:5", "host": "h", "method": "PUT", "useragent": ""},
        None,
        {"addr": "host:5000", "instanceID": "i"},
    )
    assert set(event) == {"id", "timestamp", "action", "target", "request", "source"}
    assert event["target"] == {
        "mediaType": "m",
        "size": 3,
        "length": 3,
        "digest": "sha256:ab",
        "repository": "r",
    }
    assert "useragent" not in event["request"]
    assert event["timestamp"].endswith("Z")
    assert json.loads(envelope([event])) == {"events": [event]}


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = envelope([{"id": "x"}])
    expected = hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert signature("key", body) == f"sha256={expected}"
    assert verify_signature("key", body, f"sha256={expected}")
    assert not verify_signature("other", body, f"sha256={expected}")
    assert not verify_signature("key", body + b" ", f"sha256={expected}")
    assert not verify_signature("key", body, None)
