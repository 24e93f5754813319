"""Signature, URL policy and retry schedule of webhooks (no network)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

from services.notifier.webhook_intake import UrlPolicy
from services.notifier.webhook_sender import retry_delay
from shared.webhooks import signature, verify


def test_the_signature_is_an_hmac_of_time_dot_body() -> None:
    body = b'{"type":"completed"}'
    header = signature("whsec_abc", 1_700_000_000, body)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("whsec_abc", header, body)
    assert not verify("whsec_abc", header, body + b" ")
    assert not verify("whsec_other", header, body)
    assert not verify("whsec_abc", "garbage", body)


def test_any_http_url_unless_an_allow_list_restricts_it() -> None:
    open_policy = UrlPolicy("")
    assert open_policy.refusal("http://127.0.0.1:9/x") is None
    assert open_policy.refusal("https://hooks.example.com/x") is None
    assert open_policy.refusal("ftp://example.com/x") is not None
    assert open_policy.refusal("http:///nohost") is not None
    policy = UrlPolicy("hooks.example.com, *.partner.example")
    assert policy.refusal("https://HOOKS.example.com/x") is None
    assert policy.refusal("https://a.b.partner.example/x") is None
    assert "WEBHOOK_ALLOWED_HOSTS" in (policy.refusal("http://localhost/x") or "")
    assert policy.refusal("https://evilpartner.example/x") is not None


def test_the_default_schedule_retries_within_30_s_and_spans_about_an_hour() -> None:
    base, cap, tries = 30.0, 1800.0, 10
    assert all(0 <= retry_delay(1, base, cap) <= 30 for _ in range(200))
    ceilings = [min(cap, base * 2 ** (n - 1)) for n in range(1, tries)]
    assert all(retry_delay(n, base, cap) <= ceilings[n - 1] for n in range(1, tries) for _ in range(50))
    # Full jitter: on average half of each ceiling; 9 retries after the first try, about an hour in all.
    assert 50 * 60 <= sum(ceilings) / 2 <= 70 * 60


def test_the_readme_verification_example_accepts_our_signature() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme[readme.index("## Webhooks"):]
    (example,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 5)], flags=re.S)
    scope: dict[str, Any] = {}
    exec(example, scope)  # the README's own example, run so it cannot go stale
    body = b'{"type":"completed"}'
    header = signature("whsec_abc", int(time.time()), body)
    assert scope["verify"]("whsec_abc", header, body)
    assert not scope["verify"]("whsec_abc", header, body + b"x")
    assert not scope["verify"]("whsec_abc", signature("whsec_abc", int(time.time()) - 3600, body), body)
