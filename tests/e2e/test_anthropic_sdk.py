"""The official `anthropic` package pointed at Tollgate's `/v1/messages` with a Tollgate key:
messages, streams, tool use and token counting forwarded to an Anthropic deployment, and the
gateway's own refusals (a bad key, a key over its rate limit, a model with no Anthropic
deployment) raised as the SDK's error classes."""

import json
import urllib.request

import anthropic
import pytest

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
MESSAGES = [{"role": "user", "content": "Tell me something deterministic."}]


def sdk(gw, key=None):
    # The SDK appends /v1/messages to its base URL.
    base = gw["base_url"].removesuffix("/v1")
    return anthropic.Anthropic(base_url=base, api_key=key or gw["key"], max_retries=0)


def issue(gw, **limits):
    req = urllib.request.Request(
        gw["admin_url"] + "/api/keys",
        data=json.dumps({"name": "anthropic sdk", **limits}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {gw['key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["secret"]


def test_messages_streams_and_token_counts(anthropic_gateway):
    client = sdk(anthropic_gateway)
    msg = client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
    assert msg.type == "message" and msg.content[0].type == "text"
    # Forwarded as sent, apart from the model's upstream name.
    assert msg.model == "claude-haiku-4-5-20251001"
    assert msg.usage.output_tokens == 16

    with client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == msg.content[0].text
    assert final.usage.output_tokens == 16

    counted = client.messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)
    assert counted.input_tokens == msg.usage.input_tokens


def test_tool_use_round_trip(anthropic_gateway):
    client = sdk(anthropic_gateway)
    first = client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    call = first.content[0]
    assert first.stop_reason == "tool_use" and call.name == "get_weather"
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[-1].input == call.input
    answer = client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [call.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
        ],
    )
    assert answer.stop_reason == "end_turn"


def test_the_gateway_s_refusals_are_anthropic_errors(anthropic_gateway):
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        sdk(anthropic_gateway, key="tg_not_a_real_key_0123456789").messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
        )
    assert bad_key.value.body["type"] == "error"
    assert bad_key.value.body["error"]["type"] == "authentication_error"

    limited = sdk(anthropic_gateway, key=issue(anthropic_gateway, rpm_limit=1))
    limited.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as over:
        limited.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert over.value.body["error"]["type"] == "rate_limit_error"
    assert int(over.value.response.headers["retry-after"]) >= 1

    with pytest.raises(anthropic.BadRequestError) as not_anthropic:
        sdk(anthropic_gateway).messages.create(model="gpt-4o-mini", max_tokens=10, messages=MESSAGES)
    assert "no Anthropic deployment" in not_anthropic.value.body["error"]["message"]

    with pytest.raises(anthropic.NotFoundError):
        sdk(anthropic_gateway).messages.create(model="claude-9", max_tokens=10, messages=MESSAGES)
