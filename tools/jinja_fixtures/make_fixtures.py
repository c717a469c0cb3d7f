#!/usr/bin/env python3
"""Generates the golden fixtures of flashmoe's Jinja interpreter (tests/jinja) with Python's jinja2.

The environment is the one transformers builds for chat templates (chat_template_utils.py,
_compile_jinja_template): ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), `tojson` overridden to json.dumps(ensure_ascii=False, indent=...,
separators=..., sort_keys=False), and the globals raise_exception and strftime_now. Templates are
rendered the way apply_chat_template calls them: messages, tools, documents, add_generation_prompt,
the tokenizer's special tokens, then the caller's extra kwargs.

Outputs (committed; rerun to regenerate, output is deterministic):
  tests/data/jinja/qwen3-chat-template.jinja   the template from Qwen3's tokenizer_config.json
  tests/data/jinja/qwen3.5-chat-template.jinja a copy of the Qwen3.5 template
  tests/data/jinja/conversations.json          conversations x templates -> expected prompt or error
  tests/data/jinja/snippets.json               small templates exercising one feature each

Usage: python3 tools/jinja_fixtures/make_fixtures.py [--shared /work/shared/data]
"""

import argparse
import copy
import json
import random
import shutil
import warnings
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "data" / "jinja"


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker tag, reduced to what rendering sees: the body, unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        raise RuntimeError("strftime_now is not used by fixtures (output depends on the clock)")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()
# Fuzzed expressions such as `(1)[0]` make CPython warn while jinja2 compiles them; the warning is noise.
warnings.filterwarnings("ignore", category=SyntaxWarning)


def render(source, variables):
    """Returns {"expected": text} or {"error": message, "error_type": name}."""
    try:
        return {"expected": ENV.from_string(source).render(**variables)}
    except Exception as e:  # noqa: BLE001 - any failure is a fixture outcome
        return {"error": str(e), "error_type": type(e).__name__}


# ---- conversations ----------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web. Returns the top results as \"title: snippet\" lines.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "max_results": {"type": "integer", "default": 5, "minimum": 1},
                "filters": {"type": "object", "properties": {"lang": {"type": "string"}, "safe": {"type": "boolean"}}},
            },
            "required": ["query"],
        },
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Évalue une expression arithmétique — ünïcödé <b>& \"quotes\"</b>",
        "parameters": {"type": "object", "properties": {"expr": {"type": "string"}, "precision": {"type": "number"}}},
    },
}

USER_TEXTS = [
    "What's the weather like in Paris today?",
    "Explain mixture-of-experts models in two sentences.",
    "  leading and trailing spaces  \n",
    "Ünïcödé: 日本語のテキスト, emoji 🚀🔥, Ελληνικά, русский, עברית.",
    "Multi\nline\n\nmessage with a tab\there.",
    "Quotes: 'single' \"double\" and backslash \\ and braces {{ not a tag }} {% nor this %}",
    "<tool_response>looks like a tool response</tool_response>",
    "",
    "What is 2+2?",
    "\u3000ideographic spaces around\u3000",
]
ASSISTANT_TEXTS = [
    "The weather in Paris is sunny, 22°C.",
    "MoE models route each token to a few experts.",
    "<think>\nLet me think about this.\n</think>\n\nThe answer is 4.",
    "<think>reasoning without newlines</think>answer after think",
    "Sure! Here is a list:\n- one\n- two",
    "",
    "Réponse en français avec des accents: àéîõü.",
]
REASONING = [
    "The user asks about weather; I should call the tool.",
    "\nStep 1: add.\nStep 2: done.\n",
    "思考中……",
]
SYSTEMS = [
    "You are a helpful assistant.",
    "You are Qwen. Réponds en français. 🤖",
    "  system with surrounding whitespace \n\n",
]


def tool_call(name, args, as_string=False, wrap=True):
    arguments = json.dumps(args, ensure_ascii=False) if as_string else args
    fn = {"name": name, "arguments": arguments}
    return {"type": "function", "id": f"call_{name}", "function": fn} if wrap else fn


def conversations():
    """Hand-written scenarios first, then seeded random ones."""
    convs = []

    def add(name, messages, tools=None, agp=True, **kwargs):
        convs.append({"name": name, "messages": messages, "tools": tools, "add_generation_prompt": agp, "kwargs": kwargs})

    u = lambda t: {"role": "user", "content": t}  # noqa: E731
    a = lambda t, **kw: {"role": "assistant", "content": t, **kw}  # noqa: E731
    s = lambda t: {"role": "system", "content": t}  # noqa: E731
    tool = lambda t, name=None: {"role": "tool", "content": t, **({"name": name} if name else {})}  # noqa: E731

    add("single_user", [u("Hello!")])
    add("single_user_no_gen", [u("Hello!")], agp=False)
    add("system_user", [s(SYSTEMS[0]), u("Hi there")])
    add("system_user_thinking_off", [s(SYSTEMS[0]), u("Hi there")], enable_thinking=False)
    add("system_user_thinking_on", [s(SYSTEMS[1]), u("Bonjour")], enable_thinking=True)
    add("multi_turn", [s(SYSTEMS[0]), u(USER_TEXTS[1]), a(ASSISTANT_TEXTS[1]), u("And why is that fast?")])
    add("multi_turn_no_system", [u(USER_TEXTS[8]), a("4"), u("times 3?"), a("12"), u("thanks")])
    add("multi_turn_ends_assistant", [u("Hi"), a("Hello! How can I help?")], agp=False)
    add("assistant_think_in_content", [u("2+2?"), a(ASSISTANT_TEXTS[2]), u("and 3+3?")])
    add("assistant_think_in_last", [u("2+2?"), a(ASSISTANT_TEXTS[3])], agp=False)
    add("reasoning_content_last", [u("2+2?"), a("4", reasoning_content=REASONING[1])], agp=False)
    add("reasoning_content_history", [u("2+2?"), a("4", reasoning_content=REASONING[0]), u("3+3?")])
    add("reasoning_content_unicode", [u(USER_TEXTS[3]), a("はい", reasoning_content=REASONING[2])], agp=False)
    add("reasoning_none", [u("q"), a("answer", reasoning_content=None)], agp=False)
    add("tools_no_system", [u(USER_TEXTS[0])], tools=[WEATHER_TOOL])
    add("tools_with_system", [s(SYSTEMS[0]), u(USER_TEXTS[0])], tools=[WEATHER_TOOL, SEARCH_TOOL])
    add("tools_unicode_description", [s(SYSTEMS[1]), u("Calcule 2*3")], tools=[CALC_TOOL, WEATHER_TOOL, SEARCH_TOOL])
    add("tools_empty_list", [u("hi")], tools=[])
    add(
        "tool_call_dict_args",
        [u(USER_TEXTS[0]), a("", tool_calls=[tool_call("get_weather", {"city": "Paris", "unit": "celsius"})]),
         tool("{\"temp\": 22, \"sky\": \"sunny\"}"), ],
        tools=[WEATHER_TOOL],
    )
    add(
        "tool_call_with_text",
        [u(USER_TEXTS[0]), a("Let me check.", tool_calls=[tool_call("get_weather", {"city": "Paris"})]),
         tool("sunny"), a("It is sunny in Paris.")],
        tools=[WEATHER_TOOL],
        agp=False,
    )
    add(
        "several_tool_calls",
        [s(SYSTEMS[0]), u("Weather in Paris and Tokyo, and search news"),
         a("I'll call three tools.", tool_calls=[
             tool_call("get_weather", {"city": "Paris"}),
             tool_call("get_weather", {"city": "東京", "unit": "celsius"}),
             tool_call("web_search", {"query": "news", "max_results": 3, "filters": {"lang": "en", "safe": True}}),
         ]),
         tool("Paris: 22C"), tool("東京: 18C"), tool("1. headline\n2. other headline"), ],
        tools=[WEATHER_TOOL, SEARCH_TOOL],
    )
    add(
        "tool_call_unwrapped_function",
        [u("calc"), a(None, tool_calls=[tool_call("calculator", {"expr": "2*3", "precision": 0.5}, wrap=False)]),
         tool("6")],
        tools=[CALC_TOOL],
    )
    add(
        "tool_call_string_args",
        [u("weather?"), a("", tool_calls=[tool_call("get_weather", {"city": "Paris"}, as_string=True)]), tool("sunny")],
        tools=[WEATHER_TOOL],
    )
    add(
        "tool_call_list_and_nested_args",
        [u("search"), a("", tool_calls=[tool_call("web_search", {
            "query": "a \"quoted\" query", "tags": ["x", "y", 3, None, 1.5, False], "filters": {"lang": "fr"},
            "empty": {}, "none": None, "flag": True, "n": 10, "f": 0.1})]), tool("ok")],
        tools=[SEARCH_TOOL],
    )
    add(
        "multi_step_tools",
        [u("plan a trip"),
         a("", tool_calls=[tool_call("get_weather", {"city": "Rome"})], reasoning_content="need weather"),
         tool("rainy"),
         a("", tool_calls=[tool_call("web_search", {"query": "Rome museums"})], reasoning_content="need museums"),
         tool("Vatican Museums"), ],
        tools=[WEATHER_TOOL, SEARCH_TOOL],
    )
    add(
        "multi_step_tools_finished",
        [u("plan a trip"),
         a("", tool_calls=[tool_call("get_weather", {"city": "Rome"})], reasoning_content="need weather"),
         tool("rainy"), a("Take an umbrella.", reasoning_content="done"), u("thanks!")],
        tools=[WEATHER_TOOL],
        enable_thinking=False,
    )
    add("content_text_parts", [s([{"type": "text", "text": "System as parts."}]),
                               u([{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two ✓"}])])
    add("content_text_parts_assistant", [u([{"type": "text", "text": "hi"}]), a([{"type": "text", "text": "hello"}]),
                                         u([{"text": "no type key"}])])
    add("unicode_everywhere", [s(SYSTEMS[1]), u(USER_TEXTS[3]), a(ASSISTANT_TEXTS[6]), u(USER_TEXTS[9])])
    add("whitespace_content", [s(SYSTEMS[2]), u(USER_TEXTS[2]), a("  padded answer  "), u(USER_TEXTS[4])])
    add("template_like_content", [u(USER_TEXTS[5])])
    add("empty_user", [u("")])
    add("user_looks_like_tool_response", [u(USER_TEXTS[6]), a("ok"), u("real question")])
    add("extra_kwargs_ignored", [u("hi")], custom_flag=True, add_vision_id=False)
    add("image_content", [u([{"type": "image", "image": "x.png"}, {"type": "text", "text": "describe"}])])
    add("image_content_vision_id", [u([{"type": "image_url", "image_url": "x.png"}, {"type": "video", "video": "v.mp4"},
                                       {"type": "text", "text": "both"}])], add_vision_id=True)
    # raise_exception paths
    add("error_no_messages", [])
    add("error_system_not_first", [u("hi"), s("late system")])
    add("error_only_tool_responses", [u("<tool_response>x</tool_response>")])
    add("error_unknown_role", [u("hi"), {"role": "critic", "content": "bad"}])
    add("error_system_image", [s([{"type": "image", "image": "x.png"}]), u("hi")])
    add("error_bad_content_item", [u([{"type": "audio", "audio": "x.wav"}])])
    add("error_content_number", [u(42)])

    rng = random.Random(1234)
    tools_pool = [WEATHER_TOOL, SEARCH_TOOL, CALC_TOOL]
    for k in range(40):
        msgs = []
        if rng.random() < 0.5:
            msgs.append(s(rng.choice(SYSTEMS)))
        tools = rng.sample(tools_pool, rng.randint(1, 3)) if rng.random() < 0.5 else None
        turns = rng.randint(1, 4)
        for t in range(turns):
            text = rng.choice(USER_TEXTS[:6] + USER_TEXTS[7:])
            msgs.append(u([{"type": "text", "text": text}] if rng.random() < 0.15 else text))
            if t == turns - 1 and rng.random() < 0.5:
                break
            calls = []
            if tools and rng.random() < 0.6:
                for _ in range(rng.randint(1, 3)):
                    fn = rng.choice(tools)["function"]["name"]
                    calls.append(tool_call(fn, {"arg": rng.choice(["x", "ü", 1, 2.5, True, None, ["l", 1], {"k": "v"}])},
                                           wrap=rng.random() < 0.8))
            extra = {}
            if rng.random() < 0.4:
                extra["reasoning_content"] = rng.choice(REASONING)
            content = rng.choice(ASSISTANT_TEXTS)
            msgs.append(a(content, **({"tool_calls": calls} if calls else {}), **extra))
            for c in calls:
                msgs.append(tool(rng.choice(["ok", "42", "{\"result\": [1, 2]}", "multi\nline result", "日本"])))
        kwargs = {}
        r = rng.random()
        if r < 0.3:
            kwargs["enable_thinking"] = False
        elif r < 0.5:
            kwargs["enable_thinking"] = True
        add(f"random_{k:02d}", msgs, tools=tools, agp=msgs[-1]["role"] != "assistant" or rng.random() < 0.3, **kwargs)
    return convs


def render_conversation(template, conv, special_tokens):
    variables = {
        "messages": copy.deepcopy(conv["messages"]),
        "tools": copy.deepcopy(conv["tools"]),
        "documents": None,
        "add_generation_prompt": conv["add_generation_prompt"],
        **special_tokens,
        **conv["kwargs"],
    }
    return render(template, variables)


# ---- snippets ---------------------------------------------------------------------------------

SNIPPET_VARS = {
    "d": {"a": 1, "b": [1, 2], "c": {"x": "y"}, "s": "str"},
    "l": [3, 1, 2],
    "s": "Hello, World",
    "n": None,
    "t": True,
    "f": 1.5,
    "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "yo"}, {"role": "user", "content": "bye"}],
    "u8": "héllo wörld ☃ 日本",
    "ws": " \t\n text \u3000\n",
    # for the fuzzed expressions
    "z": 0, "one": 1, "neg": -3, "fl": 2.5, "abc": "abc", "uni": "Hé ☃", "empty": "", "pad": " pad ",
    "nums": [1, 2, 3], "strs": ["b", "a", "b"], "kd": {"k": 1, "j": "v"}, "tr": True, "fa": False,
}

SNIPPETS = [
    # whitespace control (trim_blocks / lstrip_blocks / - / +)
    "a\n{% if true %}\nb\n{% endif %}\nc",
    "a\n    {% if true %}\n    b\n    {% endif %}\nc",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "a\n  {{ 'x' }}\n  {{- 'y' -}}\n  z",
    "  {%+ if true %}x{% endif %}\n",
    "{% if true +%}\nx{% endif %}",
    "{# comment #}\nline\n  {# indented comment #}\nend",
    "{#- trimmed -#}\n  x",
    "{% raw %}{{ not rendered }}{% endraw %}",
    "a {{ 1 }} {% if true %}b{% endif %}  \n  c",
    "{% for x in l %}\n  {{ x }}\n{% endfor %}\n",
    "{%- for x in l -%}\n  {{ x }}\n{%- endfor -%}",
    "x\r\ny\r\n{% if true %}\r\nz{% endif %}",
    "trailing newline\n",
    "{{ 'a' }}\n\n",
    # loops
    "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}",
    "{% for x in l %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}",
    "{% for x in l %}{{ loop.cycle('odd', 'even') }}{{ loop.depth }}{{ loop.depth0 }} {% endfor %}",
    "{% for x in l if x > 1 %}{{ x }}/{{ loop.length }} {% else %}none{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}",
    "{% for k in d %}{{ k }}{% endfor %}",
    "{% for c in 'héllo' %}{{ c }}.{% endfor %}",
    "{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in l %}{% if x == 1 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for a in [1,2] %}{% for b in [3,4] %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}",
    "{% set x = 5 %}{% for i in l %}{{ x }}{% set x = i %}{{ x }}{% endfor %}[{{ x }}]",
    "{% for m in msgs %}{% if loop.previtem and loop.previtem.role == 'user' %}after-user:{% endif %}{{ m.role }} {% endfor %}",
    "{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}",
    "{% for x in none_var %}x{% else %}undefined iterates empty{% endfor %}",
    # set / namespace / with
    "{% set ns = namespace(count=0, found=false) %}{% for x in l %}{% set ns.count = ns.count + x %}{% endfor %}{{ ns.count }} {{ ns.found }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}",
    "{% set x = 1, 2 %}{{ x }}",
    "{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]",
    "{% set block | upper %}shout{% endset %}{{ block }}",
    "{% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]",
    "{% if true %}{% set inside = 'yes' %}{% endif %}{{ inside }}",
    "{% set d2 = {'k': 'v', 'n': [1, {'z': none}]} %}{{ d2 }} {{ d2.k }} {{ d2['n'][1].z }}",
    # macros
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}",
    "{% macro m(a, b) %}[{{ a }}|{{ b }}|{{ b is defined }}]{% endmacro %}{{ m(1) }}",
    "{% macro m() %}{{ later }}{% endmacro %}{% set later = 'seen' %}{{ m() }}",
    "{% macro outer(x) %}{% macro inner(y) %}<{{ y }}>{% endmacro %}{{ inner(x) }}{{ inner(x * 2) }}{% endmacro %}{{ outer(2) }}",
    "{% macro m(x) %}  spaced {{ x }}  {% endmacro %}[{{ m(1)|trim }}]",
    "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}",
    # filters
    "{{ ws|trim }}|{{ '  x  '|trim }}|{{ 'xxaxx'|trim('x') }}",
    "{{ l|length }} {{ s|length }} {{ u8|length }} {{ d|length }} {{ l|count }}",
    "{{ d|tojson }}",
    "{{ d|tojson(indent=2) }}",
    "{{ u8|tojson }} {{ 'quote\" back\\\\ nl\\n tab\\t ctl\\x01 del\\x7f'|tojson }}",
    "{{ [1.0, 0.1, 1e-7, 1e22, 123456789.125, -0.0, 3]|tojson }}",
    "{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ u8|tojson(ensure_ascii=true) }}",
    "{{ l|tojson(separators=(',', ':')) }}",
    "{{ 42|string }} {{ n|string }} {{ t|string }} {{ f|string }} {{ l|string }} {{ d|string }}",
    "{{ s|lower }} {{ s|upper }} {{ u8|upper }} {{ 'hello wORLD-foo(bar'|title }} {{ 'hELLO'|capitalize }}",
    "{{ undefined_var|default('dflt') }} {{ n|default('dflt') }} {{ ''|default('dflt', true) }} {{ 'x'|d('y') }}",
    "{{ l|first }} {{ l|last }} {{ s|first }} {{ s|last }} {{ []|first }}",
    "{{ l|join(', ') }} {{ l|join }} {{ msgs|join('/', attribute='role') }}",
    "{{ s|replace('l', 'L') }} {{ s|replace('l', 'L', 2) }}",
    "{{ l|reverse|list }} {{ s|reverse }} {{ l|list }} {{ 'ab'|list }}",
    "{{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ msgs|rejectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}",
    "{{ msgs|map(attribute='role')|unique|list }} {{ ['A', 'a', 'b']|unique|list }}",
    "{{ l|map('string')|join('-') }} {{ [1, 0, 2]|select|list }} {{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3]|reject('even')|list }}",
    "{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'y'|float }} {{ 2|float }}",
    "{{ -3|abs }} {{ -2.5|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ 7|round }}",
    "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(1, blank=true) }}",
    "{{ '<a href=\"x\">&\\'</a>'|escape }} {{ '<b>'|safe }} {{ '<b>'|e }}",
    "{{ ('<b>'|safe) + '<i>' }} {{ '<i>' + ('<b>'|safe) }} {{ ('<b>'|safe|trim) + '<' }} {{ '<b>'|safe ~ '<i>' }}",
    "{{ d|items|list }} {{ d.keys()|list }} {{ d.values()|list|length }}",
    "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'c']|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ msgs|sort(attribute='role')|map(attribute='content')|join }}",
    "{{ [1, 2, 3]|sum }} {{ [1, 5, 2]|max }} {{ [4, 1, 9]|min }} {{ ['a', 'B']|max }}",
    "{{ '%s is %d years'|format('Ann', 30) }} {{ '%s%%'|format(5) }}",
    "{% filter upper %}shouted {{ 'text' }}{% endfilter %}",
    # tests
    "{{ d is mapping }} {{ l is mapping }} {{ l is sequence }} {{ s is sequence }} {{ s is iterable }} {{ 1 is iterable }}",
    "{{ 1 is number }} {{ 1.5 is number }} {{ t is number }} {{ 's' is number }} {{ 1 is integer }} {{ 1.5 is float }} {{ t is boolean }}",
    "{{ n is none }} {{ undefined_var is none }} {{ undefined_var is undefined }} {{ n is defined }} {{ d.zz is defined }} {{ d.a is defined }}",
    "{{ t is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ 's' is string }} {{ 1 is string }}",
    "{{ 2 is in l }} {{ 9 is in l }} {{ 'a' is in d }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }}",
    "{{ 'x' is equalto 'x' }} {{ 1 is eq 2 }} {{ 1 is ne 2 }} {{ 3 is gt 2 }} {{ 3 is lt 2 }} {{ 3 is ge 3 }} {{ n is sameas none }} {{ t is sameas true }}",
    "{{ undefined_var is not defined }} {{ l is not string }} {{ not n is none }}",
    # operators
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ 7.5 % 2 }}",
    "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 1 + 1.5 }} {{ t + 1 }}",
    "{{ 'ab' ~ 1 ~ none ~ undefined_var ~ [1] }} {{ 'a' + 'b' }} {{ 'ab' * 3 }} {{ [1] + [2, 3] }} {{ [0] * 3 }}",
    "{{ 1 == 1.0 }} {{ 1 != 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ t == 1 }} {{ undefined_var == undefined_var }}",
    "{{ 'ell' in s }} {{ 'z' not in s }} {{ 2 in l }} {{ 'a' in d }} {{ 'zz' in d }} {{ 'x' in undefined_var }}",
    "{{ t and 'yes' }} {{ n or 'fallback' }} {{ 0 and 1 }} {{ '' or [] }} {{ not t }} {{ not not 's' }}",
    "{{ 'yes' if t else 'no' }} {{ 'yes' if n else 'no' }} [{{ 'only' if n }}] {{ 1 if n else 2 if t else 3 }}",
    # subscripts, slicing, attributes, undefined
    "{{ l[0] }} {{ l[-1] }} {{ l[5] }} {{ s[0] }} {{ s[-1] }} {{ u8[1] }} {{ d['a'] }} {{ d.b[1] }} {{ d.c.x }} {{ l.0 }}",
    "{{ l[::-1] }} {{ l[1:] }} {{ l[:2] }} {{ l[::2] }} {{ l[-2:] }} {{ l[5:] }} {{ s[::-1] }} {{ u8[1:4] }} {{ s[:-7] }} {{ l[1:-1] }}",
    "{{ msgs[1:]|map(attribute='role')|join(',') }} {{ msgs[::-1][0].content }}",
    "[{{ undefined_var }}] [{{ d.missing }}] [{{ d['missing'] }}] [{{ l[10] }}] [{{ undefined_var|length }}]",
    "{% if undefined_var %}yes{% else %}no{% endif %} {% if d.missing %}yes{% else %}no{% endif %}",
    "{{ n.attr }}|{{ 1.attr is defined }}|{{ s.nope is defined }}",
    # methods
    "{{ s.startswith('Hell') }} {{ s.endswith('d') }} {{ s.startswith(('x', 'H')) }} {{ s.lower() }} {{ s.upper() }}",
    "{{ ws.strip() }}|{{ ws.lstrip() }}|{{ ws.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b\\tc\\n'.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }}",
    "{{ s.replace('o', '0') }} {{ s.find('o') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }} {{ 'hello world'.title() }} {{ 'x'.capitalize() }}",
    "{{ '{} and {}'.format(1, 'two') }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{name}!'.format(name='Ann') }} {{ '{{literal}}'.format() }}",
    "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.get('c').x }}",
    "{{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'a\\nb'.splitlines() }}",
    # literals
    "{{ [1, 'two', 3.0, none, true, [], {}] }} {{ (1,) }} {{ () }} {{ {'k': [1, 2]} }} {{ 'it\\'s' }} {{ \"say \\\"hi\\\"\" }} {{ 'a' 'b' }}",
    "{{ 1_000 }} {{ 1e3 }} {{ 2.5e-3 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 123456789012345678 }} {{ 1/3 }} {{ 10/4 }}",
    "{{ '\\u00e9\\x41\\t|' }} {{ 'unknown \\d escape' }}",
    "{{ True }} {{ False }} {{ None }} {{ true }} {{ none }}",
    # Qwen-style idioms
    "{% set content = '<think>\\nreason\\n</think>\\n\\nanswer' %}{{ content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}|{{ content.split('</think>')[-1].lstrip('\\n') }}",
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=msgs|length - 1) %}{%- for message in msgs[::-1] %}{%- set index = (msgs|length - 1) - loop.index0 %}{%- if ns.multi_step_tool and message.role == 'user' %}{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}{{ ns.last_query_index }}",
    "{{ (msgs|selectattr('role', 'equalto', 'system')|list|length) > 0 }} {{ msgs[0]['role'] == 'system' }}",
    "{% generation %}generated {{ 1 }}{% endgeneration %}",
    # more edge cases
    "{%- for m in msgs -%}\n    {%- if m.role == 'user' -%}\n        [{{ m.content }}]\n    {%- endif -%}\n{%- endfor -%}\n",
    "  {# c1 #}  x\n\t{% if true %}\ty{% endif %}\n{% raw %}\n  {{ raw }}\n{% endraw %}\nend",
    "{% macro row(item, sep=', ', last=false) %}{{ item }}{% if not last %}{{ sep }}{% endif %}{% endmacro %}{% for x in l %}{{ row(x, last=loop.last) }}{% endfor %}",
    "{% set ns = namespace(items=[]) %}{% macro add(x) %}{% set ns.items = ns.items + [x] %}{% endmacro %}{{ add(1) }}{{ add(2) }}{{ ns.items }}",
    "{% macro m(a, b=a * 2) %}{{ a }}/{{ b }}{% endmacro %}{{ m(3) }} {{ m(3, 1) }}",
    "{% for k, v in d.items() if v is not string %}{{ k }}{{ loop.index }}/{{ loop.length }}{{ loop.last }} {% endfor %}",
    "{{ d.a is defined and d.b is defined and d.zz is not defined }} {{ d.c.x is defined }}",
    "{{ 'tab\there' }}|{{ 'a\\b' }}|{{ '\'' }}|{{ \"\\\"\" }}",
    "{{ 0.5 }} {{ 1.25e-5 }} {{ 100.0 }} {{ 1e15 }} {{ 1.5e16 }} {{ -0.0001 }} {{ 2 ** 0.5 }} {{ 3 * 0.1 }} {{ 1 ~ 2.0 }}",
    "{{ {'k': ['v', {'ü': 'ñ', 'q': 'a\"b'}], 'e': [], 'o': {}}|tojson(indent=4) }}",
    "{{ {'k': ['v', 1]}|tojson(indent=0) }}|{{ [[]]|tojson(indent=2) }}",
    "{{ 'l1\nl2\n\nl4\n'|indent(3) }}|{{ 'x'|indent(first=true) }}|{{ ''|indent(2, true) }}",
    "{{ -7 // 2 }} {{ 7 // -2 }} {{ -7 % -3 }} {{ 7 % -3 }} {{ -2.5|round }} {{ -3.5|round }} {{ 0.125|round(2) }} {{ 1.005|round(2) }}",
    "{{ 'ΑΒΓ Ωμέγα'|lower }} {{ 'привет мир'|upper }} {{ 'straße'|upper }} {{ 'ÀÉÎ'|lower }} {{ 'élan vital'|title }} {{ 'ñu'|capitalize }}",
    "{{ 'a\u3000b\u00a0c d'.split() }} {{ '\u3000x\u3000'.strip() }}|{{ '\u2003y\n'|trim }}|{{ '\x1cz\x85'.strip() }}",
    "{{ {'q': 'it\'s', 'r': 'say \"hi\"', 's': 'both \' and \"', 'u': 'ü\n'} }}",
    "{{ [1, [2, (3, 4)], {'a': none}] }} {{ (1, 'a') }} {{ [true, false] }}",
    "{{ l|map('int')|sum }} {{ ['1', '2']|map('int')|list }} {{ ['a', 'b']|map('upper')|join }} {{ msgs|map(attribute='missing', default='?')|join }}",
    "{{ msgs|selectattr('content')|list|length }} {{ msgs|selectattr('role', 'in', ['user', 'system'])|map(attribute='content')|join(',') }} {{ msgs|rejectattr('role', 'ne', 'user')|list|length }}",
    "{{ msgs|first|attr_missing is defined }}",
    "{{ l|first }}{{ (l|first) + 1 }} {{ msgs|last|string }}",
    "{{ 'x' if undefined_var is defined else 'y' }} {{ undefined_var is defined and undefined_var.attr }} {{ (undefined_var or 'z')|upper }}",
    "{% if msgs[0].role == 'system' %}{% set loop_msgs = msgs[1:] %}{% else %}{% set loop_msgs = msgs %}{% endif %}{% for m in loop_msgs %}{{ m.role[0] }}{% endfor %}",
    "{% for m in msgs %}{% if loop.index0 % 2 == 0 %}{{ m.role|upper }}{% else %}{{ m.role }}{% endif %}{% if not loop.last %},{% endif %}{% endfor %}",
    "{{ msgs|length - 1 }} {{ (msgs|length - 1) - 2 }} {{ -l|length }} {{ not l|length }}",
    "{% set x = [1, 2, 3] %}{{ x|last }} {{ x[-1] == x|last }} {{ x|reverse|first }}",
    "{{ '%s'|format(none) }} {{ '%r'|format('q') }} {{ '%d%%'|format(3.9) }}",
    "{{ 'abc'[1:] ~ 'abc'[:-1] ~ 'abc'[::2] ~ 'abc'[10:] }} {{ ''[::-1] }} {{ [][:1] }}",
    "{{ 1 < 2.5 }} {{ 2 == 2.0 }} {{ true == 1 }} {{ false == 0 }} {{ none == none }} {{ none == false }} {{ [1] == [1.0] }} {{ {'a': 1} == {'a': 1} }}",
    "{{ 'b' > 'a' }} {{ 'é' > 'z' }} {{ (1, 2) < (1, 2, 0) }} {{ 2 >= 2 }} {{ 1 != 1.0 }}",
    # errors (the test checks that both fail)
    "{{ raise_exception('custom failure message') }}",
    "{{ undefined_var.attr }}",
    "{{ undefined_var + 1 }}",
    "{{ 1 + 'a' }}",
    "{{ d.missing.deeper }}",
    "{{ l|items|list }}",
    "{{ [1, 2]|select|length }}",
    "{{ 'a' < 1 }}",
    "{{ 1 in 2 }}",
    "{{ 1 // 0 }}",
    "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
    "{% set d3 = {} %}{% set d3.x = 1 %}",
    "{{ undefined_fn() }}",
    "{{ undefined_var|tojson }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ (1, 2)|tojson }}",
    "{{ none + 1 }}",
    "{{ [1]|join|int + 'x' }}",
    "{{ l[1:2:0] }}",
]


# Atoms are variables, not literals: jinja2 folds constant expressions at compile time with
# different error handling (a literal `1[0]` folds to undefined), which templates never rely on.
FUZZ_ATOMS = ["z", "one", "neg", "fl", "abc", "uni", "empty", "pad", "nums", "strs", "kd", "tr", "fa",
              "undefined_var", "d", "l", "s", "msgs", "u8", "ws", "f", "n", "d.b", "msgs[1]"]
FUZZ_FILTERS = ["length", "string", "trim", "upper", "lower", "first", "last", "list", "join(',')", "tojson",
                "default('D')", "int", "float", "abs", "round", "reverse|list", "unique|list", "sort", "capitalize",
                "title", "items|list", "count", "map('string')|list", "select|list", "tojson(indent=1)"]
FUZZ_TESTS = ["defined", "none", "string", "number", "mapping", "iterable", "sequence", "boolean", "integer", "float"]
FUZZ_BINOPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">", "<=", ">=", "in", "not in", "and", "or"]
FUZZ_SUBSCRIPTS = ["[0]", "[-1]", "[1:]", "[::-1]", "[:2]", ".k", "['k']"]
FUZZ_METHODS = [".strip()", ".split()", ".upper()", ".startswith('a')", ".endswith('c')", ".replace('b', 'B')",
                ".lstrip('a')", ".get('k')", ".items()|list", ".keys()|list", ".split('b')"]


def fuzz_expr(rng, depth):
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(FUZZ_ATOMS)
    kind = rng.randrange(7)
    a = fuzz_expr(rng, depth - 1)
    if kind == 0:
        return f"({a} {rng.choice(FUZZ_BINOPS)} {fuzz_expr(rng, depth - 1)})"
    if kind == 1:
        return f"({a}|{rng.choice(FUZZ_FILTERS)})"
    if kind == 2:
        return f"({a} is {'not ' if rng.random() < 0.3 else ''}{rng.choice(FUZZ_TESTS)})"
    if kind == 3:
        return f"({a}){rng.choice(FUZZ_METHODS)}"
    if kind == 4:
        return f"({a}){rng.choice(FUZZ_SUBSCRIPTS)}"
    if kind == 5:
        return f"({a} if {fuzz_expr(rng, depth - 1)} else {fuzz_expr(rng, depth - 1)})"
    return f"(not {a})" if rng.random() < 0.5 else f"(-{a})"


def fuzz_snippets(count=600, seed=99):
    """Random expressions; kept when jinja2's output does not depend on object addresses."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        src = "{{ " + fuzz_expr(rng, 3) + " }}"
        r = render(src, copy.deepcopy(SNIPPET_VARS))
        if "0x" in r.get("expected", "") or len(r.get("expected", "")) > 2000:
            continue
        out.append({"template": src, **r})
    return out


WS_TEXTS = ["", " ", "  ", "\n", "\n  ", "a", " b ", "\t", "\n\n", "c\n  ", "  \n", "\n\t \n d", "é\u3000"]


def ws_tag(rng, body, begin="{%", end="%}", plus_end=True):
    left = rng.choice(["", "", "-", "+"])
    right = rng.choice(["", "", "-"] + (["+"] if plus_end else []))
    return f"{begin}{left} {body} {right}{end}"


def ws_template(rng, depth):
    """Text interleaved with tags carrying random whitespace-control signs."""
    parts = []
    for _ in range(rng.randint(1, 5)):
        parts.append(rng.choice(WS_TEXTS))
        k = rng.randrange(6 if depth > 0 else 3)
        if k == 0:
            parts.append(ws_tag(rng, "'x'", "{{", "}}", plus_end=False))
        elif k == 1:
            parts.append(ws_tag(rng, "note", "{#", "#}"))
        elif k == 2:
            parts.append(ws_tag(rng, "set v = 1"))
        elif k == 3:
            parts += [ws_tag(rng, "if true"), ws_template(rng, depth - 1), ws_tag(rng, "else"), ws_template(rng, depth - 1),
                      ws_tag(rng, "endif")]
        elif k == 4:
            parts += [ws_tag(rng, "for i in [1, 2]"), ws_template(rng, depth - 1), ws_tag(rng, "endfor")]
        else:
            parts += [ws_tag(rng, "macro m()"), ws_template(rng, depth - 1), ws_tag(rng, "endmacro"), "{{ m() }}"]
    parts.append(rng.choice(WS_TEXTS))
    return "".join(parts)


def whitespace_snippets(count=400, seed=5):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        src = ws_template(rng, 2)
        out.append({"template": src, **render(src, {})})
    return out


def snippets():
    handwritten = [{"template": src, **render(src, copy.deepcopy(SNIPPET_VARS))} for src in SNIPPETS]
    return handwritten + fuzz_snippets() + whitespace_snippets()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="/work/shared/data", help="folder with the reference templates")
    args = ap.parse_args()
    shared = Path(args.shared)
    OUT.mkdir(parents=True, exist_ok=True)

    qwen3_config = json.loads((shared / "qwen3-tokenizer" / "tokenizer_config.json").read_text(encoding="utf-8"))
    (OUT / "qwen3-chat-template.jinja").write_text(qwen3_config["chat_template"], encoding="utf-8")
    shutil.copyfile(shared / "qwen3.5-chat-template.jinja", OUT / "qwen3.5-chat-template.jinja")

    # The special tokens transformers adds to the render variables (non-null entries only).
    special = {k: qwen3_config[k] for k in ("bos_token", "eos_token") if qwen3_config.get(k) is not None}

    templates = {
        "qwen3-chat-template.jinja": (OUT / "qwen3-chat-template.jinja").read_text(encoding="utf-8"),
        "qwen3.5-chat-template.jinja": (OUT / "qwen3.5-chat-template.jinja").read_text(encoding="utf-8"),
    }
    cases = []
    for conv in conversations():
        for name, source in templates.items():
            cases.append({"template": name, **conv, "special_tokens": special, **render_conversation(source, conv, special)})
    meta = {"jinja2_version": jinja2.__version__, "generator": "tools/jinja_fixtures/make_fixtures.py"}
    (OUT / "conversations.json").write_text(
        json.dumps({**meta, "cases": cases}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (OUT / "snippets.json").write_text(
        json.dumps({**meta, "variables": SNIPPET_VARS, "cases": snippets()}, ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8")
    ok = sum("expected" in c for c in cases)
    print(f"{len(cases)} conversation cases ({ok} render, {len(cases) - ok} raise), "
          f"{len(json.loads((OUT / 'snippets.json').read_text(encoding='utf-8'))['cases'])} snippets -> {OUT}")


if __name__ == "__main__":
    main()
