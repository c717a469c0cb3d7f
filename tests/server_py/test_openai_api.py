"""`flashmoe serve` through the official openai client (and raw HTTP where the client would not
send what we test): chat and completions, streaming, stop and length, reasoning, tool calls,
prompt caching, concurrency, a client that disconnects, and every error status."""
import http.client
import json
import threading
import time
from urllib.parse import urlparse

import openai
import pytest

from conftest import API_KEY, CONTEXT, MAX_BODY

MODEL = "tiny-qwen35moe"
NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                         "metric": {"type": "boolean"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}}}},
]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, timeout=60, max_retries=0)


def ask(client, text, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("extra_body", NO_THINK)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **kw)


class Reply:
    def __init__(self, status, body):
        self.status_code, self.text = status, body.decode(errors="replace")

    def json(self):
        return json.loads(self.text)


def raw(server, method, path, body=None, key=API_KEY):
    """One request on its own connection, with nothing the openai client would add or check."""
    url = urlparse(server.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    reply = Reply(resp.status, resp.read())
    conn.close()
    return reply


def raw_post(server, path, body, key=API_KEY):
    return raw(server, "POST", path, body, key)


def health(server):
    return raw(server, "GET", "/health", key=None).json()


def assert_error(resp, status, param=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if param is not None:
        assert err["param"] == param


# ---- endpoints ----

def test_health_and_models(server, client):
    assert health(server)["status"] == "ok"
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_non_stream(client):
    r = ask(client, "Who was Moses?", max_tokens=40)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 5 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_chat_stream_matches_non_stream(client):
    whole = ask(client, "Tell me of Abraham.", max_tokens=30)
    stream = ask(client, "Tell me of Abraham.", max_tokens=30, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)


def test_content_parts_and_sampling_fields(client):
    r = client.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=0.9, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.5,
        seed=11, messages=[{"role": "system", "content": "Speak as the Preacher."},
                           {"role": "user", "content": [{"type": "text", "text": "Vanity of "},
                                                        {"type": "text", "text": "vanities"}]}],
        extra_body={"top_k": 10, "min_p": 0.05, "repetition_penalty": 1.1, **NO_THINK})
    again = client.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=0.9, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.5,
        seed=11, messages=[{"role": "system", "content": "Speak as the Preacher."},
                           {"role": "user", "content": [{"type": "text", "text": "Vanity of "},
                                                        {"type": "text", "text": "vanities"}]}],
        extra_body={"top_k": 10, "min_p": 0.05, "repetition_penalty": 1.1, **NO_THINK})
    assert r.choices[0].message.content == again.choices[0].message.content  # a seed reproduces


def test_stop_sequence(client):
    full = ask(client, "And God said", max_tokens=40).choices[0].message.content
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[2]
    cut = full[:full.index(stop)]
    r = ask(client, "And God said", max_tokens=40, stop=[stop, "NEVER-SEEN"])
    assert r.choices[0].message.content == cut
    assert r.choices[0].finish_reason == "stop"
    s = ask(client, "And God said", max_tokens=40, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in s if c.choices) == cut


def test_max_tokens_gives_length(client):
    r = ask(client, "In the beginning", max_tokens=3, extra_body={"ignore_eos": True, **NO_THINK})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    r = ask(client, "In the beginning", max_completion_tokens=2, extra_body={"ignore_eos": True, **NO_THINK})
    assert r.usage.completion_tokens == 2


def test_completions_endpoint(client):
    r = client.completions.create(model=MODEL, prompt="In the beginning God", max_tokens=8, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    s = client.completions.create(model=MODEL, prompt="In the beginning God", max_tokens=8, temperature=0,
                                  stream=True, extra_body={"ignore_eos": True})
    assert "".join(c.choices[0].text for c in s if c.choices) == r.choices[0].text


# ---- reasoning ----

def test_reasoning_is_split_out(client):
    r = ask(client, "SCRIPT_REASONING: what came first?", extra_body={})  # thinking on (the default)
    msg = r.choices[0].message
    assert msg.reasoning_content == "I should answer briefly.\n"
    assert msg.content == "Let there be light."
    s = ask(client, "SCRIPT_REASONING: what came first?", extra_body={}, stream=True)
    reasoning, content = "", ""
    for c in s:
        if c.choices:
            reasoning += getattr(c.choices[0].delta, "reasoning_content", None) or ""
            content += c.choices[0].delta.content or ""
    assert (reasoning, content) == (msg.reasoning_content, msg.content)


def test_thinking_off_gives_no_reasoning(client):
    r = ask(client, "Who was Noah?", max_tokens=20)
    assert getattr(r.choices[0].message, "reasoning_content", None) is None
    assert "<think>" not in r.choices[0].message.content


# ---- tools ----

def test_tool_call_non_stream(client):
    r = ask(client, "SCRIPT_TOOL: weather in Paris?", tools=TOOLS, extra_body={})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert choice.message.reasoning_content == "The user wants the weather.\n"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3, "metric": True}


def test_tool_calls_stream(client):
    s = ask(client, "SCRIPT_TWO_TOOLS please", tools=TOOLS, stream=True)
    calls, finish = {}, None
    for c in s:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
            entry["name"] += tc.function.name or ""
            entry["arguments"] += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Rome"}
    assert json.loads(calls[1]["arguments"]) == {"zone": "CET"}
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_tool_result_round_trip(client):
    first = ask(client, "SCRIPT_TOOL: weather in Paris?", tools=TOOLS, extra_body={})
    call = first.choices[0].message.tool_calls[0]
    messages = [
        {"role": "user", "content": "SCRIPT_TOOL: weather in Paris?"},
        {"role": "assistant", "content": first.choices[0].message.content,
         "tool_calls": [{"id": call.id, "type": "function",
                         "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, max_tokens=200, temperature=0,
                                       extra_body=NO_THINK)
    # The last user message still holds the script's key, so the reply is the scripted call again.
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.usage.prompt_tokens > first.usage.prompt_tokens


def test_malformed_tool_call_falls_back_to_content(client):
    r = ask(client, "SCRIPT_BROKEN_TOOL now", tools=TOOLS)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar"
    assert r.choices[0].finish_reason == "stop"


def test_tool_choice_none_and_named(client):
    r = ask(client, "SCRIPT_TOOL: weather?", tools=TOOLS, tool_choice="none")
    assert r.choices[0].message.tool_calls is None  # not parsed: shown as text
    assert "<tool_call>" in r.choices[0].message.content
    r = ask(client, "Who was Moses?", tools=TOOLS, max_tokens=12,
            tool_choice={"type": "function", "function": {"name": "get_time"}})
    msg = r.choices[0].message
    forced = (msg.tool_calls and msg.tool_calls[0].function.name == "get_time") or \
        (msg.content or "").startswith("<tool_call>\n<function=get_time>")
    assert forced, msg


# ---- prompt caching ----

def test_second_turn_reuses_the_first(client):
    messages = [{"role": "user", "content": "Who was Aaron, the brother of Moses?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0,
                                           extra_body=NO_THINK)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And who was Miriam?"}]
    second = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0,
                                            extra_body=NO_THINK)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # Everything up to the end of the first question is reused (the reply, rendered without its
    # <think> block as history, and the generation prompt's ~9 tokens run again).
    assert cached >= first.usage.prompt_tokens - 12, (cached, first.usage.prompt_tokens)
    assert cached < second.usage.prompt_tokens


# ---- many clients ----

def test_eight_concurrent_clients(server, client):
    prompts = [f"Tell me of {name}." for name in
               ["Adam", "Eve", "Cain", "Abel", "Seth", "Enoch", "Noah", "Shem"]]
    alone = [ask(client, p, max_tokens=16).choices[0].message.content for p in prompts]
    results, errors = [None] * 8, []

    def run(i):
        try:
            own = openai.OpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, timeout=120, max_retries=0)
            stream = i % 2 == 1
            r = ask(own, prompts[i], max_tokens=16, stream=stream)
            results[i] = "".join(c.choices[0].delta.content or "" for c in r if c.choices) if stream \
                else r.choices[0].message.content
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert results == alone


def test_disconnect_mid_stream_frees_the_slot(server, client):
    before = health(server)["requests_cancelled"]
    stream = ask(client, "And God said", max_tokens=900, stream=True, extra_body={"ignore_eos": True, **NO_THINK})
    got = 0
    for chunk in stream:
        got += 1
        if got == 4:
            break
    stream.close()
    deadline = time.time() + 15
    while time.time() < deadline:
        h = health(server)
        if h["requests_cancelled"] > before and h["slots_busy"] == 0:
            break
        time.sleep(0.1)
    assert h["requests_cancelled"] > before and h["slots_busy"] == 0, h
    assert ask(client, "Who was Moses?", max_tokens=4).choices[0].finish_reason in ("stop", "length")


# ---- errors ----

def test_malformed_json_and_wrong_types(server):
    assert_error(raw_post(server, "/v1/chat/completions", b"{\"messages\": [}"), 400)
    assert_error(raw_post(server, "/v1/chat/completions", b"[1, 2]"), 400)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}
    assert_error(raw_post(server, "/v1/chat/completions", json.dumps(body)), 400, "temperature")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}
    assert_error(raw_post(server, "/v1/chat/completions", json.dumps(body)), 400, "max_tokens")
    assert_error(raw_post(server, "/v1/completions", json.dumps({"prompt": 5})), 400, "prompt")


def test_client_sees_bad_requests(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[])
    assert e.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    assert e.value.param == "n"
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "And God said " * 600)  # far beyond --ctx-size
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "hi", max_tokens=CONTEXT)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        ask(client, "hi", stream=True, max_tokens=CONTEXT)  # refused before the stream starts


def test_unknown_route_and_method(server):
    assert_error(raw_post(server, "/v1/engines", b"{}"), 404)
    assert_error(raw(server, "GET", "/v2/models"), 404)


def test_oversized_body(server):
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]})
    assert_error(raw_post(server, "/v1/chat/completions", body), 413)


def test_api_key(server):
    bad = openai.OpenAI(base_url=server.base_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert_error(raw(server, "GET", "/v1/models", key=None), 401)
    assert_error(raw_post(server, "/v1/chat/completions", b"{}", key="wrong"), 401)
    assert raw(server, "GET", "/health", key=None).status_code == 200
    preflight = raw(server, "OPTIONS", "/v1/chat/completions", key=None)  # browsers send no key here
    assert preflight.status_code == 204


def test_still_serving_after_every_error(server, client):
    assert health(server)["status"] == "ok"
    r = ask(client, "Who was Moses?", max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert server.proc.poll() is None
