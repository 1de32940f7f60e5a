"""The official `openai` Python package against Tollgate: what an application sees."""

import openai
import pytest


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=gateway["base_url"], api_key=gateway["key"], max_retries=0)


MESSAGES = [{"role": "user", "content": "Tell me something deterministic."}]


def test_chat_non_stream(client):
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


def test_chat_stream_assembles_to_the_same_text(client):
    full = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == full.choices[0].message.content
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_alias_resolves(client):
    reply = client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=3)
    assert reply.usage.completion_tokens == 3
    assert reply.choices[0].finish_reason == "length"


def test_embeddings(client):
    # The SDK asks for base64 by default and decodes it.
    result = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], dimensions=16)
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 16
    assert result.usage.prompt_tokens > 0


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["gpt-4o-mini", "text-embedding-3-small", "throttled"]
    assert client.models.retrieve("demo").id == "gpt-4o-mini"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9-turbo", messages=MESSAGES)
    assert err.value.code == "model_not_found"
    assert "gpt-9-turbo" in err.value.message


def test_bad_key_is_an_authentication_error(gateway):
    bad = openai.OpenAI(base_url=gateway["base_url"], api_key="tg_not_a_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.code == "invalid_api_key"


def test_malformed_body_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.post(
            "/chat/completions",
            cast_to=object,
            content=b'{"model": "gpt-4o-mini", "messages": [',
            options={"headers": {"Content-Type": "application/json"}},
        )
    assert err.value.code == "invalid_json"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_body={"stream": "yes"})


def test_upstream_rate_limit_reaches_the_sdk(client):
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="throttled", messages=MESSAGES)
    assert err.value.response.headers["retry-after"] == "1"


def test_responses_api(client):
    response = client.responses.create(model="gpt-4o-mini", input="Say hi.")
    assert response.output_text
    assert response.usage.output_tokens > 0
