// Chat templates: each family's exact prompt for llama.cpp's test conversation (tests/test-chat-template.cpp
// in llama.cpp: system, user, assistant, user, an assistant reply padded with spaces, user, and the
// assistant prompt), detection from real Jinja strings, and the errors. The expected strings are the
// "expected_output" llama.cpp pins for its non-Jinja formatter, which is what we implement.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qe::tokenizer {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};

struct Case {
  ChatTemplate t;
  std::string expected;
};

const std::vector<Case> kCases = {
    {ChatTemplate::kChatml,
     "<|im_start|>system\nYou are a helpful "
     "assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>"
     "assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am "
     "an "
     "assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
    {ChatTemplate::kLlama2,
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an "
     "assistant   "
     "</s>[INST] Another question [/INST]"},
    {ChatTemplate::kLlama2Sys,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you "
     "[/INST]   "
     "I am an assistant   </s>[INST] Another question [/INST]"},
    {ChatTemplate::kLlama2SysBos,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are "
     "you "
     "[/INST]   I am an assistant   </s><s>[INST] Another question [/INST]"},
    {ChatTemplate::kLlama2SysStrip,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you "
     "[/INST]I am an assistant</s>[INST] Another question [/INST]"},
    {ChatTemplate::kMistralV1,
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am "
     "an "
     "assistant   </s> [INST] Another question [/INST]"},
    {ChatTemplate::kMistralV3,
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an "
     "assistant</s>[INST] Another question[/INST]"},
    {ChatTemplate::kMistralV3Tekken,
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an "
     "assistant   "
     "</s>[INST]Another question[/INST]"},
    {ChatTemplate::kMistralV7,
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who "
     "are "
     "you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"},
    {ChatTemplate::kMistralV7Tekken,
     "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi there</s>[INST]Who are "
     "you[/INST]   I am an assistant   </s>[INST]Another question[/INST]"},
    {ChatTemplate::kPhi3,
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
     "there<|end|>\n"
     "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother "
     "question<|end|>\n<|assistant|>\n"},
    {ChatTemplate::kZephyr,
     "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi "
     "there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   "
     "<|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n"},
    {ChatTemplate::kGemma,
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi "
     "there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an "
     "assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
    {ChatTemplate::kLlama3,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant<|eot_id|><|start_header_id|>user<|"
     "end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi "
     "there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
     "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
};

TEST(ChatTemplate, EveryFamilyFormatsLlamaCppsConversation) {
  ASSERT_EQ(kCases.size(), chat_template_names().size()) << "a family without a pinned prompt";
  for (const Case& c : kCases)
    EXPECT_EQ(format_chat(c.t, kConversation, true), c.expected) << chat_template_name(c.t);
}

TEST(ChatTemplate, AssistantPromptOnlyWhereTheFamilyHasOne) {
  const std::vector<ChatMessage> one = {{"user", "Hi"}};
  EXPECT_EQ(format_chat(ChatTemplate::kChatml, one, false), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(format_chat(ChatTemplate::kLlama3, one, false),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(format_chat(ChatTemplate::kGemma, one, false), "<start_of_turn>user\nHi<end_of_turn>\n");
  // [INST] families end the user turn with [/INST]: the same text either way.
  for (ChatTemplate t : {ChatTemplate::kLlama2, ChatTemplate::kMistralV1, ChatTemplate::kMistralV7})
    EXPECT_EQ(format_chat(t, one, true), format_chat(t, one, false)) << chat_template_name(t);
}

TEST(ChatTemplate, NamesRoundTrip) {
  for (std::string_view n : chat_template_names()) {
    const std::optional<ChatTemplate> t = chat_template_from_name(n);
    ASSERT_TRUE(t) << n;
    EXPECT_EQ(chat_template_name(*t), n);
    // llm_chat_detect_template accepts a name in place of a template.
    Result<ChatTemplate> d = detect_chat_template(n);
    ASSERT_TRUE(d) << n;
    EXPECT_EQ(*d, *t);
  }
  EXPECT_FALSE(chat_template_from_name("chatml2"));
}

// Real templates (tokenizer_config.json of the named models) and what llama.cpp detects them as.
TEST(ChatTemplate, DetectsRealTemplates) {
  const std::vector<std::pair<std::string, ChatTemplate>> cases = {
      // HuggingFaceTB/SmolLM2-135M-Instruct
      {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
       "'<|im_start|>system\n"
       "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif "
       "%}{{'<|im_start|>"
       "' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if "
       "add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
       ChatTemplate::kChatml},
      // meta-llama/Meta-Llama-3-8B-Instruct
      {"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
       "'<|start_header_id|>' + "
       "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if "
       "loop.index0 == 0 "
       "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ "
       "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
       ChatTemplate::kLlama3},
      // mistralai/Mistral-7B-Instruct-v0.2 (no system role)
      {"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == "
       "0) %}{{ "
       "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
       "%}{% if "
       "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] "
       "== "
       "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and "
       "assistant roles "
       "are supported!') }}{% endif %}{% endfor %}",
       ChatTemplate::kLlama2},
      // mistralai/Mistral-Large-Instruct-2411 (v7)
      {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
       "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + "
       "message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
       "message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and assistant roles "
       "are "
       "supported!') }}{% endif %}{% endfor %}",
       ChatTemplate::kMistralV7},
      // mistralai's official v1 template with a system prompt
      {"{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}",
       ChatTemplate::kMistralV1},
      {"{{- \"[AVAILABLE_TOOLS] [\" }}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}",
       ChatTemplate::kMistralV3},
      {"{{- \"[AVAILABLE_TOOLS][\" }}{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}",
       ChatTemplate::kMistralV3Tekken},
      // TheBloke/FusionNet_34Bx2_MoE-AWQ and bofenghuang/vigogne-2-70b-chat
      {"{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}{{- '[INST] <<SYS>>\\n' }}",
       ChatTemplate::kLlama2SysBos},
      {"{{ '[INST] ' + content.strip() + ' [/INST]' }}{{ '<<SYS>>\\n' }}", ChatTemplate::kLlama2SysStrip},
      {"{{ '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}", ChatTemplate::kLlama2Sys},
      // google/gemma-7b-it
      {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}",
       ChatTemplate::kGemma},
      // zephyr as llama.cpp tells it: <|user|> and <|endoftext|> (one with <|assistant|> too is taken
      // for glmedge/falcon3 first, in llama.cpp as here)
      {"{{ '<|user|>\\n' + message['content'] + '<|endoftext|>' }}", ChatTemplate::kZephyr},
      // microsoft/Phi-3-mini
      {"{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}",
       ChatTemplate::kPhi3},
  };
  for (const auto& [jinja, want] : cases) {
    Result<ChatTemplate> t = detect_chat_template(jinja);
    ASSERT_TRUE(t) << jinja << "\n" << t.error().message();
    EXPECT_EQ(*t, want) << jinja;
  }
}

// The library names the setting that gets past the error (option "chat_template"), never a flag: the
// front ends add theirs (qrun: --chat-template and the names; tests/python/test_chat_template.py checks
// what chat_format_tool prints).
TEST(ChatTemplate, UnknownTemplateIsOneLineNamingTheOption) {
  Result<ChatTemplate> t = detect_chat_template("{{ messages | tojson }}");
  ASSERT_FALSE(t);
  const std::string m = t.error().message();
  EXPECT_EQ(t.error().option, "chat_template");
  EXPECT_EQ(m, "tokenizer.chat_template: not a chat template qrun recognises");
  EXPECT_EQ(m.find("--"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(chat_template_name_list().rfind("chatml, llama2, ", 0), 0u);  // what the front ends list
}

TEST(ChatTemplate, FamilyWeDoNotRenderIsNamed) {
  // phi-4 uses <|im_start|> but is not chatml; deepseek-coder is a llama.cpp family we leave out.
  for (const auto& [jinja, family] : std::vector<std::pair<std::string, std::string>>{
           {"<|im_start|>system<|im_sep|>", "phi4"}, {"### Instruction:\n ... <|EOT|>", "deepseek"}}) {
    Result<ChatTemplate> t = detect_chat_template(jinja);
    ASSERT_FALSE(t) << jinja;
    EXPECT_NE(t.error().message().find("\"" + family + "\""), std::string::npos) << t.error().message();
    EXPECT_EQ(t.error().option, "chat_template");
    EXPECT_EQ(t.error().message().find("--"), std::string::npos) << t.error().message();
  }
}

TEST(ChatTemplate, ResolveOrder) {
  // --chat-template wins over the model's; no template (or an empty one) means chatml, as llama.cpp.
  EXPECT_EQ(resolve_chat_template("llama3", std::string_view("<|im_start|>")).value(), ChatTemplate::kLlama3);
  EXPECT_EQ(resolve_chat_template("", std::nullopt).value(), ChatTemplate::kChatml);
  EXPECT_EQ(resolve_chat_template("", std::string_view("")).value(), ChatTemplate::kChatml);
  EXPECT_EQ(resolve_chat_template("", std::string_view("<start_of_turn>")).value(), ChatTemplate::kGemma);
  Result<ChatTemplate> bad = resolve_chat_template("llama-3", std::nullopt);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().option, "chat_template");
  EXPECT_EQ(bad.error().field, "chat_template");
  EXPECT_EQ(bad.error().message().find("--"), std::string::npos) << bad.error().message();
  EXPECT_NE(bad.error().message().find("llama3"), std::string::npos);
}

TEST(ChatTemplate, AssistantTurnTailIsTheEndMarker) {
  const std::vector<ChatMessage> prompt = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(assistant_turn_tail(ChatTemplate::kChatml, prompt, "Hello!"), "<|im_end|>\n");
  EXPECT_EQ(assistant_turn_tail(ChatTemplate::kChatml, prompt, ""), "<|im_end|>\n");
  // Llama 3 trims the reply: the tail follows the trimmed text; the cache keeps what was generated.
  EXPECT_EQ(assistant_turn_tail(ChatTemplate::kLlama3, prompt, " Hello! \n"), "<|eot_id|>");
  // Mistral v7 puts a space before the reply, which an SPM reply usually starts with already.
  EXPECT_EQ(assistant_turn_tail(ChatTemplate::kMistralV7, prompt, " Hello!"), "</s>");
  EXPECT_EQ(assistant_turn_tail(ChatTemplate::kLlama2Sys, prompt, "Hello!"), "</s>");
  EXPECT_EQ(assistant_turn_tail(ChatTemplate::kGemma, prompt, "Hello!"), "<end_of_turn>\n");
  // Every family: history + tail + next turn = the formatted whole, so the cache stays the template's text.
  for (std::string_view n : chat_template_names()) {
    const ChatTemplate t = *chat_template_from_name(n);
    std::vector<ChatMessage> h = prompt;
    const std::string asked = format_chat(t, h, true);
    const std::string tail = assistant_turn_tail(t, h, "Hello!");
    h.push_back({"assistant", "Hello!"});
    const std::string whole = format_chat(t, h, false);
    EXPECT_TRUE(whole.starts_with(asked)) << n;
    EXPECT_TRUE(whole.ends_with("Hello!" + tail)) << n;  // a space before the reply is the model's to write
  }
}

}  // namespace
}  // namespace qe::tokenizer
