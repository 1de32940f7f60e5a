"""The bundled mock's Anthropic mode, driven by the official `anthropic` SDK: its messages,
event streams, tool use, prompt-cache usage, token counts and errors parse exactly as the
SDK expects them from Anthropic, so the gateway's tests against it stand for the real API."""

import json
import urllib.error
import urllib.request

import anthropic
import pytest

from conftest import run_mock

MOCK_KEY = "sk-ant-mock-0123456789"

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def mock():
    with run_mock("--api-key", MOCK_KEY) as base_url:
        yield base_url


def client(base_url, key=MOCK_KEY):
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)


def stats(base_url):
    with urllib.request.urlopen(f"{base_url}/_mock/stats") as resp:
        return json.load(resp)


def test_a_message_parses_with_its_usage(mock):
    msg = client(mock).messages.create(
        model="claude-haiku-4-5",
        max_tokens=12,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.model == "claude-haiku-4-5"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text
    assert msg.stop_reason == "max_tokens"  # 16 tokens by default, 12 allowed
    assert msg.usage.output_tokens == 12
    assert msg.usage.input_tokens > 0
    assert msg.usage.cache_read_input_tokens == 0


def test_a_stream_assembles_into_the_same_message(mock):
    c = client(mock)
    request = dict(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Tell me something"}],
    )
    with c.messages.stream(**request) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    plain = c.messages.create(**request)
    assert text == plain.content[0].text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens == 16
    assert final.usage.input_tokens == plain.usage.input_tokens
    # Every event type arrives, ping included.
    with c.messages.create(stream=True, **request) as events:
        kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)


def test_tool_use_plain_and_streamed(mock):
    c = client(mock)
    forced = c.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert forced.stop_reason == "tool_use"
    assert [b.type for b in forced.content] == ["tool_use"]
    call = forced.content[0]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert call.input == {"city": "mock city", "unit": "celsius", "days": 42}

    with c.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=100,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    # Under `auto`, a short text leads to the call; the streamed JSON pieces add up.
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == call.input
    assert final.stop_reason == "tool_use"

    # Given the tool's result, the answer is text.
    answer = c.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [call.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21C"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert [b.type for b in answer.content] == ["text"]


def test_prompt_cache_is_written_then_read(mock):
    c = client(mock)
    long_doc = "The quick brown fox jumps over the lazy dog. " * 100
    system = [{"type": "text", "text": long_doc, "cache_control": {"type": "ephemeral"}}]
    first = c.messages.create(
        model="claude-haiku-4-5", max_tokens=8, system=system,
        messages=[{"role": "user", "content": "Summarise"}],
    )
    second = c.messages.create(
        model="claude-haiku-4-5", max_tokens=8, system=system,
        messages=[{"role": "user", "content": "Summarise again"}],
    )
    assert first.usage.cache_creation_input_tokens > 900
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    counted = c.messages.count_tokens(
        model="claude-haiku-4-5", system=system,
        messages=[{"role": "user", "content": "Summarise"}],
    )
    total = first.usage.input_tokens + first.usage.cache_creation_input_tokens
    assert counted.input_tokens == total


def test_errors_map_to_the_sdk_classes(mock):
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(mock, key="wrong").messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert bad_key.value.body["error"]["type"] == "authentication_error"

    # max_tokens is required (the SDK's types insist too, so the request is sent raw).
    raw = urllib.request.Request(
        f"{mock}/v1/messages",
        data=json.dumps({"model": "claude-haiku-4-5",
                         "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"x-api-key": MOCK_KEY, "anthropic-version": "2023-06-01",
                 "content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as no_max:
        urllib.request.urlopen(raw)
    assert no_max.value.code == 400
    error = json.load(no_max.value)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in error["error"]["message"]

    with pytest.raises(anthropic.RateLimitError) as limited:
        client(mock).messages.create(
            model="claude-haiku-4-5@status=429,retry_after=3",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["error"]["type"] == "rate_limit_error"

    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client(mock).messages.create(
            model="claude-haiku-4-5@status=529",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"


def test_raw_stream_has_ping_and_counts(mock):
    before = stats(mock)
    req = urllib.request.Request(
        f"{mock}/v1/messages",
        data=json.dumps({
            "model": "claude-haiku-4-5", "max_tokens": 4, "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }).encode(),
        headers={"x-api-key": MOCK_KEY, "anthropic-version": "2023-06-01",
                 "content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        body = resp.read().decode()
        assert resp.headers["content-type"].startswith("text/event-stream")
    events = [line[len("event: "):] for line in body.splitlines() if line.startswith("event: ")]
    assert events == (
        ["message_start", "content_block_start", "ping"]
        + ["content_block_delta"] * 4
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    after = stats(mock)
    assert after["requests"]["messages"] == before["requests"]["messages"] + 1
    assert after["completion_tokens"] == before["completion_tokens"] + 4
