#!/usr/bin/env python3
"""Regenerates golden.json: the expected renders of templates/*.jinja.

The renders come from Python's jinja2 configured as Hugging Face transformers
configures it for apply_chat_template (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, a tojson that calls json.dumps with
ensure_ascii=False, raise_exception, strftime_now). The Go tests never run
this script; it documents where the expected strings came from.

    python3 gen_golden.py > golden.json   # jinja2 3.1.x
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2025, 3, 14, 15, 9, 26)  # the tests pass the same clock


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return NOW.strftime(fmt)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

CONVERSATIONS = {
    # llama.cpp tests/test-chat-template.cpp's conversation.
    "full": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Who are you"},
        {"role": "assistant", "content": "   I am an assistant   "},
        {"role": "user", "content": "Another question"},
    ],
    "nosys": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Who are you"},
        {"role": "assistant", "content": "   I am an assistant   "},
        {"role": "user", "content": "Another question"},
    ],
    "sys_user": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Hello"},
    ],
    "user": [
        {"role": "user", "content": "Hello"},
    ],
    "user_user": [
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": "Hello again"},
    ],
    "tricky": [
        {"role": "user", "content": "h\u00e9llo \u2014 \u65e5\u672c\u8a9e \"dq\" 'sq' \\ {{ not_a_tag }} {% if %}\n\ttabs  "},
        {"role": "assistant", "content": "<think>\nplan\n</think>\n\nanswer"},
        {"role": "user", "content": "again"},
    ],
}

TOOLS = [{
    "function": {
        "description": "Get the weather",
        "name": "get_weather",
        "parameters": {
            "properties": {"city": {"description": "City name", "type": "string"}},
            "required": ["city"],
            "type": "object",
        },
    },
    "type": "function",
}]

TOKENS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma": ("<bos>", "<eos>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "chatml": ("<s>", "<|im_end|>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "phi3-mini": ("<s>", "<|endoftext|>"),
    "command-r": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "deepseek-coder": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<|EOT|>"),
}


def cases():
    names = sorted(f[:-len(".jinja")] for f in os.listdir("templates") if f.endswith(".jinja"))
    for name in names:
        bos, eos = TOKENS.get(name, ("<s>", "</s>"))
        for conv in CONVERSATIONS:
            yield dict(template=name, conversation=conv, bos=bos, eos=eos,
                       add_generation_prompt=conv != "user", extra=None)
    yield dict(template="qwen3", conversation="full", bos="", eos="<|im_end|>",
               add_generation_prompt=True, extra={"enable_thinking": False})
    yield dict(template="qwen3", conversation="sys_user", bos="", eos="<|im_end|>",
               add_generation_prompt=True, extra={"tools": TOOLS})
    yield dict(template="llama3.2", conversation="sys_user", bos="<|begin_of_text|>",
               eos="<|eot_id|>", add_generation_prompt=True, extra={"tools": TOOLS})
    yield dict(template="llama3.2", conversation="user", bos="<|begin_of_text|>",
               eos="<|eot_id|>", add_generation_prompt=True,
               extra={"date_string": "01 Jan 2030"})
    yield dict(template="mistral-nemo", conversation="nosys", bos="<s>", eos="</s>",
               add_generation_prompt=True, extra={"tools": TOOLS})


def main():
    out = []
    for c in cases():
        src = open(os.path.join("templates", c["template"] + ".jinja"), encoding="utf-8").read()
        ctx = dict(messages=CONVERSATIONS[c["conversation"]], bos_token=c["bos"],
                   eos_token=c["eos"], add_generation_prompt=c["add_generation_prompt"])
        ctx.update(c["extra"] or {})
        try:
            c["want"] = env.from_string(src).render(**ctx)
        except jinja2.exceptions.TemplateError as e:
            c["error"] = str(e)
        out.append(c)
    json.dump({"jinja2": jinja2.__version__, "now": NOW.isoformat(),
               "conversations": CONVERSATIONS, "cases": out},
              sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
