"""The `notifications` section: distribution's endpoint keys, durations, filters, back-off,
and one clear error per mistake."""

from __future__ import annotations

import pytest

from registry.events.config import Endpoint, parse_duration, parse_notifications
from registry.settings import SettingsError, load_settings


def test_a_distribution_style_endpoint_parses() -> None:
    parsed = parse_notifications(
        {
            "endpoints": [
                {
                    "name": "alistener",
                    "url": "https://hooks.example/event",
                    "headers": {"Authorization": ["Bearer abc"], "X-One": "1"},
                    "timeout": "500ms",
                    "threshold": 5,
                    "backoff": "1s",
                    "ignoredmediatypes": ["application/octet-stream"],
                    "ignore": {"mediatypes": ["text/plain"], "actions": ["pull"]},
                },
                {"name": "off", "url": "http://x", "disabled": True},
            ],
            "lease": "1m30s",
        }
    )
    (endpoint,) = parsed.endpoints
    assert endpoint.headers == (("Authorization", "Bearer abc"), ("X-One", "1"))
    assert endpoint.timeout == 0.5
    assert endpoint.threshold == 5
    assert endpoint.ignored_media_types == {"application/octet-stream", "text/plain"}
    assert endpoint.ignored_actions == {"pull"}
    assert parsed.lease == 90.0


@pytest.mark.parametrize(
    ("raw", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h1s", 3601.0), (3, 3.0)]
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw, "k") == seconds


@pytest.mark.parametrize("raw", ["soon", "5 s", "-1s", True, "1x"])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ValueError, match="k"):
        parse_duration(raw, "k")


@pytest.mark.parametrize(
    "endpoint",
    [
        {"name": "a b", "url": "http://x"},
        {"name": "a", "url": "ftp://x"},
        {"name": "a", "url": "http://x", "ignore": {"actions": ["explode"]}},
        {"name": "a", "url": "http://x", "maxattempts": 0},
        {"name": "a", "url": "http://x", "timeout": "0s"},
        {"name": "a", "url": "http://x", "colour": "blue"},
    ],
)
def test_mistakes_are_refused_with_the_key(endpoint: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"endpoints\[0\]"):
        parse_notifications({"endpoints": [endpoint]})


def test_settings_refuse_a_bad_section_at_load(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "c.yaml"
    config.write_text("notifications:\n  endpoints:\n    - {name: a, url: nope}\n")
    with pytest.raises(SettingsError, match="notifications: endpoints"):
        load_settings(config, environ={})
    config.write_text("notifications:\n  endpoints:\n    - {name: a, url: 'http://h/'}\n")
    assert load_settings(config, environ={}).notifications == {
        "endpoints": [{"name": "a", "url": "http://h/"}]
    }


def test_filters_and_back_off() -> None:
    endpoint = Endpoint(
        "a",
        "http://x",
        ignored_actions=frozenset({"pull"}),
        ignored_media_types=frozenset({"application/octet-stream"}),
        threshold=2,
        backoff=1.0,
        max_backoff=5.0,
    )
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json"}
    assert endpoint.wants({"action": "push", "target": manifest})
    assert not endpoint.wants({"action": "pull", "target": manifest})
    assert not endpoint.wants(
        {"action": "push", "target": {"mediaType": "application/octet-stream"}}
    )
    assert [endpoint.retry_delay(n) for n in range(1, 7)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
