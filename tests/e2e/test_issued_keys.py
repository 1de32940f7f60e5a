"""Keys issued through the admin API, used with the official `openai` package: the errors
an application gets for limits, revocation and model restrictions, and stream usage as
OpenAI delivers it."""

import json
import urllib.request

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Tell me something deterministic."}]


def admin(gateway, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(gateway["admin_url"] + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {gateway['key']}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def issue(gateway, **limits):
    return admin(gateway, "POST", "/api/keys", {"name": "sdk test", **limits})


def sdk(gateway, key):
    return openai.OpenAI(base_url=gateway["base_url"], api_key=key["secret"], max_retries=0)


def test_an_issued_key_works_and_streams_report_usage_only_when_asked(gateway):
    client = sdk(gateway, issue(gateway))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.usage.completion_tokens > 0

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(chunk.choices for chunk in chunks), "no usage-only chunk without include_usage"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == reply.choices[0].message.content

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_rate_limits_raise_rate_limit_error(gateway):
    client = sdk(gateway, issue(gateway, rpm_limit=1))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.code == "rate_limit_requests"
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_revoked_keys_and_other_models_are_refused(gateway):
    key = issue(gateway, allowed_models=["gpt-4o-mini"])
    client = sdk(gateway, key)
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert err.value.code == "model_not_allowed"

    admin(gateway, "POST", f"/api/keys/{key['id']}/revoke")
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.code == "api_key_revoked"
