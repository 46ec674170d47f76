#!/usr/bin/env python3
"""Chat-template oracle: Python's `jinja2`, configured as transformers' apply_chat_template does
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, HF's tojson,
raise_exception, strftime_now).

  chat_template_oracle.py MODEL.gguf OUT.json

Writes a list of cases {name, template, messages, extra, add_generation_prompt, ok, output}: the
real model's template and five family templates (ChatML/Qwen2.5 with tools, Llama 3, Mistral,
Gemma 2, Gemma 3) over several conversations, plus feature templates for the interpreter.
"""
import json
import sys
from datetime import datetime

import gguf
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA3 = """{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"""

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

MISTRAL = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content']|trim + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

GEMMA2 = """{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"""

GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

# Interpreter features beyond the family templates (filters, tests, slices, scoping, macros).
FEATURES = [
    "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.role|upper }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% set ns = namespace(n=0, last='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.n }} {{ ns.last }}",
    "{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{% endfor %}{{ x }}",
    "{{ messages|length }} {{ messages|map(attribute='role')|join(',') }} {{ messages|selectattr('role', 'equalto', 'user')|list|length }}",
    "{{ messages[-1].content[:5] }}|{{ messages[-1].content[::-1] }}|{{ messages[0].content[2:-2] }}",
    "{% for m in messages if m.role != 'system' %}[{{ m.content.strip() }}]{% else %}none{% endfor %}",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1 + 2 * 3 }} {{ 'a' ~ 1 ~ none }} {{ 3 > 2 and 2 >= 2 }}",
    "{{ {'b': 1, 'a': [1, 2.5, none, true, 'x\"y']}|tojson }} {{ {'k': 'v'}|tojson(indent=2) }} {{ ['a', 1] }} {{ none }} {{ 1.0 }} {{ 0.1 + 0.2 }}",
    "{% macro turn(role, text='') %}<{{ role }}>{{ text|trim }}</{{ role }}>{% endmacro %}{% for m in messages %}{{ turn(m.role, m.content) }}{% endfor %}{{ turn('x') }}",
    "{% if messages[0].missing is defined %}yes{% elif messages[0].role is string and messages is not mapping %}str{% else %}no{% endif %} {{ messages[0].get('role') }} {{ messages[0].get('nope', 'dflt') }} {{ undefined_var|default('dv') }}",
    "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %} {{ 'a,b,,c'.split(',') }} {{ ' x y '.split() }} {{ 'Hello'.startswith('He') }} {{ 'abc'.replace('b', 'B') }} {{ 'hello world'.title() }}",
    "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %} {{ range(2, 9, 3)|list }} {{ [3, 1, 2]|sort }} {{ [1, 1, 2]|unique|list }} {{ 'abc'|reverse }}",
    "  {%- for m in messages %}\n    {{ m.role }}\n  {% endfor %}\n{# comment #}\n  {% if true %}\n  kept\n  {% endif %}\nend",
    "{{ 'user' in messages|map(attribute='role')|list }} {{ 'x' not in 'abc' }} {{ messages[0]['role'] == 'system' if messages else 'empty' }} {{ (1, 2)[1] }} {{ 'yes' if none else 'no' }}",
    "{% set block %}inner {{ messages|length }}{% endset %}[{{ block }}] {{ 'multi' 'part' }} {{ '%s' }} {{ 'a\\tb\\n' }}{{ 10 is divisibleby 5 }} {{ 3 is odd }}",
]


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def conversations():
    sys_user = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "How do I bake bread?"}]
    user_only = [{"role": "user", "content": "  Héllo — 你好 😀  "}]
    multi = [{"role": "system", "content": "Be brief.\n"},
             {"role": "user", "content": "Hi!"},
             {"role": "assistant", "content": " Hello. How can I help? "},
             {"role": "user", "content": "Tell me a joke about \"quotes\" and 'apostrophes'."}]
    bad_order = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    return [("sys_user", sys_user), ("user_only", user_only), ("multi", multi), ("bad_order", bad_order)]


def main():
    model, out_path = sys.argv[1:3]
    reader = gguf.GGUFReader(model)
    smollm = reader.fields["tokenizer.chat_template"].contents()
    env = make_env()
    templates = [("smollm2", smollm), ("qwen25", QWEN25), ("llama3", LLAMA3), ("mistral", MISTRAL),
                 ("gemma2", GEMMA2), ("gemma3", GEMMA3)]
    templates += [(f"feature{i}", t) for i, t in enumerate(FEATURES)]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    tool_chat = [{"role": "user", "content": "Weather in Paris?"},
                 {"role": "assistant", "content": "", "tool_calls": [
                     {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}}]},
                 {"role": "tool", "content": "{\"temp\": 21}"},
                 {"role": "tool", "content": "{\"wind\": 3}"}]
    cases = []
    for tname, source in templates:
        convs = conversations()
        extras = [{}] * len(convs)
        if tname == "qwen25":
            convs.append(("tools", tool_chat))
            extras.append({"tools": tools})
        for (cname, messages), extra in zip(convs, extras):
            for add_gen in (True, False):
                context = {"messages": messages, "add_generation_prompt": add_gen, "tools": None,
                           "documents": None, "bos_token": "<s>", "eos_token": "</s>"}
                context.update(extra)
                try:
                    output, ok = env.from_string(source).render(**context), True
                except jinja2.exceptions.TemplateError as e:
                    output, ok = str(e), False
                cases.append({"name": f"{tname}/{cname}/gen={add_gen}", "template": source,
                              "messages": messages, "extra": extra, "add_generation_prompt": add_gen,
                              "ok": ok, "output": output})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    print(len(cases), "cases,", sum(not c["ok"] for c in cases), "raise")


if __name__ == "__main__":
    main()
