"""Our chat formatting (src/tokenizer/chat_template.cpp, driven through tests/tools/chat_format_tool) against
HF transformers rendering the real Jinja templates (transformers.utils.chat_template_utils, the code behind
tokenizer.apply_chat_template, on jinja2).

The templates: SmolLM2's as its GGUF carries it (tokenizer.chat_template, read with the gguf package), and
the tokenizer_config.json templates of Llama 3, Mistral 7B v0.2 (llama.cpp's "llama2"), Mistral's official
v1 template, Mistral Large 2411 ("mistral-v7"), Gemma and Phi-3 as literal strings (the same strings
llama.cpp's tests/test-chat-template.cpp pins). Each is rendered for conversations the template accepts
(Mistral v0.2 and Gemma refuse a system role) with and without the generation prompt.

Two deliberate differences, both llama.cpp's: the formatter writes no BOS (the tokenizer adds it), so the
rendered BOS is stripped before comparing; and SmolLM2's template invents a system message when the
conversation has none, which llama.cpp's chatml formatter (and ours) does not.
"""

from __future__ import annotations

import json
import subprocess

import gguf
import jinja2  # noqa: F401  (transformers renders chat templates with it)
import pytest
import transformers.utils.chat_template_utils as chat_utils

from conftest import tool


LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
          "{% endif %}")
MISTRAL_V02 = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 "
               "== 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
               "}}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
               "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ "
               "raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
MISTRAL_V1 = ("{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
              "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
              "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == "
              "'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, "
              "conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if "
              "message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            "
              "{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n"
              "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif "
              "message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n"
              "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an "
              "initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n")
MISTRAL_V7 = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
              "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + "
              "message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
              "message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and assistant roles "
              "are supported!') }}{% endif %}{% endfor %}")
GEMMA = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for "
         "message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception("
         "'Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] "
         "== 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
         "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if "
         "add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")
PHI3_SMALL = ("{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] "
              "+ '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ "
              "eos_token }}{% endif %}")

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
TURNS = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you?\nTell me in two lines."},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question: é, 漢字, emoji 🙂"},
]
WITH_SYSTEM = [SYSTEM, *TURNS]

# name: (template, bos, eos, expected family, conversations it accepts)
CASES = {
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3", [WITH_SYSTEM, TURNS, TURNS[:1]]),
    "mistral-v0.2": (MISTRAL_V02, "<s>", "</s>", "llama2", [TURNS, TURNS[:1], TURNS[:3]]),
    "mistral-v1": (MISTRAL_V1, "<s>", "</s>", "mistral-v1", [WITH_SYSTEM, TURNS, TURNS[:1]]),
    "mistral-v7": (MISTRAL_V7, "<s>", "</s>", "mistral-v7", [WITH_SYSTEM, TURNS, TURNS[:1]]),
    "gemma": (GEMMA, "<bos>", "<eos>", "gemma", [TURNS, TURNS[:1]]),
    "phi3-small": (PHI3_SMALL, "<s>", "<|endoftext|>", "phi3", [WITH_SYSTEM, TURNS]),
}


def ours(template: str, messages: list[dict], add_generation_prompt: bool) -> dict:
    proc = subprocess.run([str(tool("chat_format_tool"))], capture_output=True, timeout=60,
                          input=json.dumps({"template": template, "messages": messages,
                                            "add_generation_prompt": add_generation_prompt}).encode())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


def hf(template: str, messages: list[dict], add_generation_prompt: bool, bos: str, eos: str) -> str:
    rendered, _ = chat_utils.render_jinja_template(conversations=[messages], chat_template=template,
                                                   add_generation_prompt=add_generation_prompt,
                                                   bos_token=bos, eos_token=eos)
    text = rendered[0]
    # llama.cpp's formatters leave BOS to the tokenizer.
    return text[len(bos):] if text.startswith(bos) else text


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_transformers(name, add_generation_prompt):
    template, bos, eos, family, conversations = CASES[name]
    for messages in conversations:
        want = hf(template, messages, add_generation_prompt, bos, eos)
        if name == "phi3-small" and not add_generation_prompt:
            want = want.removesuffix(eos)  # the template ends a finished chat with EOS; llama.cpp's phi3 does not
        got = ours(template, messages, add_generation_prompt)
        assert got.get("name") == family, got
        assert got["prompt"] == want, f"{name}, {len(messages)} messages"


def test_smollm2_template_from_the_gguf(default_model):
    template = gguf.GGUFReader(str(default_model)).get_field("tokenizer.chat_template").contents()
    for add in (True, False):
        got = ours(template, WITH_SYSTEM, add)
        assert got.get("name") == "chatml", got
        assert got["prompt"] == hf(template, WITH_SYSTEM, add, "", "<|im_end|>")  # the template writes no bos_token
        # Without a system message SmolLM2's Jinja invents one; llama.cpp's chatml does not.
        default_system = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                          "Face<|im_end|>\n")
        want = hf(template, TURNS, add, "", "<|im_end|>")
        assert want.startswith(default_system)
        assert ours(template, TURNS, add)["prompt"] == want[len(default_system):]


def test_unknown_template_is_an_error_naming_the_flag():
    got = ours("{% for m in messages %}{{ m.content }}{% endfor %}", TURNS, True)
    assert "--chat-template" in got["error"] and "chatml" in got["error"], got
