// Chat prompts as llama.cpp builds them without a Jinja engine (src/llama-chat.cpp): a GGUF's
// `tokenizer.chat_template` is recognised by characteristic substrings (llm_chat_detect_template) and
// rendered by a hand-written formatter per family (llm_chat_apply_template). Pure functions of their
// arguments, so each is tested against strings HF transformers renders from the real Jinja templates.
//
//   Result<ChatTemplate> t = resolve_chat_template("", gguf_template);   // "" = detect
//   std::string prompt = format_chat(*t, {{"system", "Be brief."}, {"user", "Hi"}}, true);
//
// Like llama.cpp, the formatters never write BOS: the tokenizer adds it when the vocabulary asks.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"

namespace qe::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The families we render, by llama.cpp's names (llama.cpp's --chat-template NAME).
enum class ChatTemplate {
  kChatml,           // <|im_start|>role\n...<|im_end|>\n  (SmolLM2, Qwen, OpenHermes)
  kLlama2,           // [INST] ... [/INST]; a system message is prepended to the first user turn
  kLlama2Sys,        // ... with <<SYS>>\n...\n<</SYS>>\n\n
  kLlama2SysBos,     // ... and <s> before every later [INST]
  kLlama2SysStrip,   // ... and contents trimmed
  kMistralV1,        // " [INST] " + system + "\n\n" + user + " [/INST]" + " " + assistant + "</s>"
  kMistralV3,        // "[INST] " ... "[/INST]" + " " + trim(assistant) + "</s>"
  kMistralV3Tekken,  // "[INST]" ... "[/INST]" + assistant + "</s>"
  kMistralV7,        // [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] ...</s>
  kMistralV7Tekken,  // the same without the spaces
  kPhi3,             // <|role|>\n...<|end|>\n
  kZephyr,           // <|role|>\n...<|endoftext|>\n  (stablelm-zephyr)
  kGemma,            // <start_of_turn>user|model\n...<end_of_turn>\n, system merged into the user turn
  kLlama3,           // <|start_header_id|>role<|end_header_id|>\n\n trim(content)<|eot_id|>
};

// Every supported name, in llama.cpp's order, for messages and --help.
std::span<const std::string_view> chat_template_names();
// "chatml, llama2, ..." (for one-line errors).
std::string chat_template_name_list();
std::string_view chat_template_name(ChatTemplate t);
std::optional<ChatTemplate> chat_template_from_name(std::string_view name);

// llm_chat_detect_template: a template given by name, or a Jinja string recognised by its substrings.
// Error when the string matches none of our families; when it matches a family llama.cpp knows but we
// do not render (phi4, deepseek, command-r, ...), the reason names that family. Either error has field
// "tokenizer.chat_template" and option "chat_template": naming a template is the way past it.
Result<ChatTemplate> detect_chat_template(std::string_view jinja);

// What a chat uses: `name` (the chat_template setting) when not empty, else the GGUF's template, else
// chatml (as llama.cpp does for a model without one). An unknown name is an error with field and option
// "chat_template" whose reason lists the names; the GGUF's template can fail as detect_chat_template.
Result<ChatTemplate> resolve_chat_template(std::string_view name,
                                           std::optional<std::string_view> gguf_template);

// The prompt for `messages`; add_assistant_prompt appends the header that starts the assistant's turn
// (families whose user turn already ends in one, such as [INST] ... [/INST], add nothing).
std::string format_chat(ChatTemplate t, std::span<const ChatMessage> messages, bool add_assistant_prompt);

// What a template writes after the assistant's reply once the reply is in the history: the text of
// format_chat(with the reply, false) that follows `reply` in it (the end marker, "<|im_end|>\n",
// "<|eot_id|>", "</s>"). `prompt_messages` is the history up to the user turn that was answered. A chat
// keeps the generated tokens in its KV cache and evaluates only this tail, as llama.cpp's
// common_chat_format_single does. Templates that trim the reply are handled by looking for the trimmed
// text; an empty reply gives the whole formatted tail.
std::string assistant_turn_tail(ChatTemplate t, std::span<const ChatMessage> prompt_messages,
                                std::string_view reply);

}  // namespace qe::tokenizer
