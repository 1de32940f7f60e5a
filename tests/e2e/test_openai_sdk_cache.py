"""The response cache through the official `openai` SDK: hits carry the same text in
every form the SDK reads (a stream served from a stored JSON answer, a stream replayed
from a stored stream), and the mock upstream sees one request per distinct question."""

import json
import urllib.request

import openai
import pytest

from conftest import SERVER, run_gateway, run_mock

CONFIG = SERVER + """providers:
  - {{name: upstream, kind: openai-compatible, base_url: "@MOCK@/v1"}}
models:
  - name: gpt-4o-mini
    deployments: [{{provider: upstream}}]
    cache: {{enabled: true, ttl: 10m}}
"""


@pytest.fixture(scope="module")
def cached():
    with run_mock() as mock_url:
        with run_gateway(CONFIG.replace("@MOCK@", mock_url)) as gw:
            yield dict(gw, mock_url=mock_url)


def upstream_requests(mock_url):
    with urllib.request.urlopen(f"{mock_url}/_mock/stats") as resp:
        return json.load(resp)["requests_total"]


def client(gw):
    return openai.OpenAI(base_url=gw["base_url"], api_key=gw["key"], max_retries=0)


def ask(question, **extra):
    return dict(
        model="gpt-4o-mini",
        temperature=0,
        messages=[{"role": "user", "content": question}],
        **extra,
    )


def streamed_text(stream):
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    return text, usage


def test_a_stream_is_served_from_a_stored_answer_with_the_same_text(cached):
    c = client(cached)
    before = upstream_requests(cached["mock_url"])
    raw = c.chat.completions.with_raw_response.create(**ask("Cache me, please."))
    assert raw.headers["x-tollgate-cache"] == "miss"
    first = raw.parse()
    again = c.chat.completions.with_raw_response.create(**ask("Cache me, please."))
    assert again.headers["x-tollgate-cache"] == "hit"
    assert "age" in again.headers
    hit = again.parse()
    assert hit.choices[0].message.content == first.choices[0].message.content
    assert hit.usage.total_tokens == first.usage.total_tokens
    assert hit.id != first.id

    stream = c.chat.completions.create(
        **ask("Cache me, please."), stream=True, stream_options={"include_usage": True}
    )
    text, usage = streamed_text(stream)
    assert text == first.choices[0].message.content
    assert usage.completion_tokens == first.usage.completion_tokens
    assert upstream_requests(cached["mock_url"]) == before + 1


def test_a_stored_stream_replays_as_the_same_text(cached):
    c = client(cached)
    before = upstream_requests(cached["mock_url"])
    told, _ = streamed_text(c.chat.completions.create(**ask("Stream me."), stream=True))
    retold, usage = streamed_text(c.chat.completions.create(**ask("Stream me."), stream=True))
    assert retold == told and told
    assert usage is None
    counted, usage = streamed_text(
        c.chat.completions.create(
            **ask("Stream me."), stream=True, stream_options={"include_usage": True}
        )
    )
    assert counted == told and usage.completion_tokens > 0
    assert upstream_requests(cached["mock_url"]) == before + 1


def test_what_changes_the_answer_misses_and_what_does_not_hits(cached):
    c = client(cached)
    c.chat.completions.create(**ask("Parameters?"))
    before = upstream_requests(cached["mock_url"])
    same = c.chat.completions.with_raw_response.create(**ask("Parameters?", user="someone"))
    assert same.headers["x-tollgate-cache"] == "hit"
    shorter = c.chat.completions.with_raw_response.create(**ask("Parameters?", max_tokens=3))
    assert shorter.headers["x-tollgate-cache"] == "miss"
    bypass = c.chat.completions.with_raw_response.create(
        **ask("Parameters?"), extra_headers={"cache-control": "no-cache"}
    )
    assert bypass.headers["x-tollgate-cache"] == "bypass"
    assert upstream_requests(cached["mock_url"]) == before + 2
