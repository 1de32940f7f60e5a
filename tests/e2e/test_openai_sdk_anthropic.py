"""The official `openai` package calling models that live at Anthropic (played by the mock's
Anthropic mode): the gateway translates requests, answers, streams, tool calls and errors,
and the SDK sees what it sees from OpenAI."""

import json

import openai
import pytest

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}]

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Tell me something deterministic."},
]


@pytest.fixture(scope="module")
def client(anthropic_gateway):
    gw = anthropic_gateway
    return openai.OpenAI(base_url=gw["base_url"], api_key=gw["key"], max_retries=0)


def test_chat_and_stream_with_usage(client):
    reply = client.chat.completions.create(model="claude-haiku-4-5", messages=MESSAGES)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 16
    assert reply.usage.prompt_tokens_details.cached_tokens == 0

    stream = client.chat.completions.create(
        model="claude-haiku-4-5", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, ids = [], None, set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
    assert "".join(pieces) == reply.choices[0].message.content
    assert usage.completion_tokens == reply.usage.completion_tokens
    assert usage.prompt_tokens == reply.usage.prompt_tokens
    assert len(ids) == 1


def test_tool_calls_plain_and_streamed(client):
    reply = client.chat.completions.create(
        model="claude-haiku-4-5", tools=WEATHER, tool_choice="required",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock city"}

    stream = client.chat.completions.create(
        model="claude-haiku-4-5", tools=WEATHER, stream=True,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    calls, text, finish = {}, "", None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                if delta.function.name:
                    entry["name"] = delta.function.name
                entry["arguments"] += delta.function.arguments or ""
    assert text  # under tool_choice auto, a short text leads to the call
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "mock city"}

    # The result goes back; the answer is text.
    answer = client.chat.completions.create(
        model="claude-haiku-4-5", tools=WEATHER,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            reply.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
        ],
    )
    assert answer.choices[0].finish_reason == "stop"


def test_refusals_and_overload(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="claude-haiku-4-5", messages=MESSAGES, seed=7)
    assert refused.value.body["param"] == "seed"

    with pytest.raises(openai.RateLimitError) as overloaded:
        client.chat.completions.create(model="claude-overloaded", messages=MESSAGES)
    assert overloaded.value.response.headers["retry-after"] == "1"

    served = client.chat.completions.create(model="claude-with-fallback", messages=MESSAGES)
    assert served.choices[0].message.content
