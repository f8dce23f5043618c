#include "tokenizer/chat_template.h"

#include <fmt/core.h>

#include <array>
#include <cctype>
#include <utility>

namespace qe::tokenizer {
namespace {

struct Named {
  std::string_view name;
  ChatTemplate t;
};

// llama.cpp's names (LLM_CHAT_TEMPLATES) for the families we render.
constexpr std::array<Named, 14> kNamed = {{
    {"chatml", ChatTemplate::kChatml},
    {"llama2", ChatTemplate::kLlama2},
    {"llama2-sys", ChatTemplate::kLlama2Sys},
    {"llama2-sys-bos", ChatTemplate::kLlama2SysBos},
    {"llama2-sys-strip", ChatTemplate::kLlama2SysStrip},
    {"mistral-v1", ChatTemplate::kMistralV1},
    {"mistral-v3", ChatTemplate::kMistralV3},
    {"mistral-v3-tekken", ChatTemplate::kMistralV3Tekken},
    {"mistral-v7", ChatTemplate::kMistralV7},
    {"mistral-v7-tekken", ChatTemplate::kMistralV7Tekken},
    {"phi3", ChatTemplate::kPhi3},
    {"zephyr", ChatTemplate::kZephyr},
    {"gemma", ChatTemplate::kGemma},
    {"llama3", ChatTemplate::kLlama3},
}};

constexpr std::array<std::string_view, kNamed.size()> kNames = [] {
  std::array<std::string_view, kNamed.size()> n{};
  for (size_t i = 0; i < kNamed.size(); ++i) n[i] = kNamed[i].name;
  return n;
}();

// llama.cpp's trim(): ASCII whitespace (isspace in the C locale) at both ends.
std::string_view trim(std::string_view s) {
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// A family llama.cpp recognises, or the name of one it recognises that we do not render.
using Detected = std::pair<std::optional<ChatTemplate>, std::string_view>;

// llm_chat_detect_template's substring tests, in its order (the order matters: a Mistral template
// contains "[INST]" and may contain "<|im_start|>"-free llama2 markers, Phi-3 shares <|assistant|>
// with Falcon 3 and GLM-Edge, and so on).
Detected detect(std::string_view tmpl) {
  auto has = [tmpl](std::string_view s) { return tmpl.find(s) != std::string_view::npos; };
  using T = ChatTemplate;
  if (has("<|im_start|>")) {
    if (has("<|im_sep|>")) return {std::nullopt, "phi4"};
    if (has("<end_of_utterance>")) return {std::nullopt, "smolvlm"};  // <|im_start|> as BOS, not chatml
    return {T::kChatml, "chatml"};
  }
  if (tmpl.starts_with("mistral") || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return {T::kMistralV7, "mistral-v7"};
    // Mistral's official v1/v3/v3-tekken templates (mistralai/cookbook, chat_templates.md).
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return {T::kMistralV1, "mistral-v1"};
      if (has("\"[INST]\"")) return {T::kMistralV3Tekken, "mistral-v3-tekken"};
      return {T::kMistralV3, "mistral-v3"};
    }
    // Llama 2 and its variants (https://huggingface.co/blog/llama2#how-to-prompt-llama-2).
    if (has("content.strip()")) return {T::kLlama2SysStrip, "llama2-sys-strip"};
    if (has("bos_token + '[INST]")) return {T::kLlama2SysBos, "llama2-sys-bos"};
    if (has("<<SYS>>")) return {T::kLlama2Sys, "llama2-sys"};
    return {T::kLlama2, "llama2"};
  }
  if (has("<|assistant|>") && has("<|end|>")) return {T::kPhi3, "phi3"};
  if (has("[gMASK]<sop>")) return {std::nullopt, "chatglm4"};
  if (has("<|assistant|>") && has("<|user|>")) return {std::nullopt, has("</s>") ? "falcon3" : "glmedge"};
  if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return {std::nullopt, "glmedge"};
  if (has("<|user|>") && has("<|endoftext|>")) return {T::kZephyr, "zephyr"};
  if (has("bos_token + message['role']")) return {std::nullopt, "monarch"};
  if (has("<start_of_turn>")) return {T::kGemma, "gemma"};
  if (has("'\\n\\nAssistant: ' + eos_token")) return {std::nullopt, "orion"};
  if (has("GPT4 Correct ")) return {std::nullopt, "openchat"};
  if (has("USER: ") && has("ASSISTANT: ")) return {std::nullopt, has("SYSTEM: ") ? "vicuna-orca" : "vicuna"};
  if (has("### Instruction:") && has("<|EOT|>")) return {std::nullopt, "deepseek"};
  if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return {std::nullopt, "command-r"};
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return {T::kLlama3, "llama3"};
  if (has("[gMASK]sop")) return {std::nullopt, "chatglm3"};
  if (has("<用户>")) return {std::nullopt, "minicpm"};
  if (has("'Assistant: ' + message['content'] + eos_token")) return {std::nullopt, "deepseek2"};
  if (has("<｜Assistant｜>") && has("<｜User｜>") && has("<｜end▁of▁sentence｜>"))
    return {std::nullopt, "deepseek3"};
  if (has("[|system|]") && has("[|assistant|]") && has("[|endofturn|]"))
    return {std::nullopt, has("[|tool|]") ? "exaone4" : "exaone3"};
  if (has("<|start_of_role|>")) return {std::nullopt, "granite"};
  if (has("<|header_start|>") && has("<|header_end|>")) return {std::nullopt, "llama4"};
  return {std::nullopt, ""};
}

void format_llama2(std::string& out, ChatTemplate t, std::span<const ChatMessage> messages) {
  const bool system_tags = t != ChatTemplate::kLlama2;
  const bool bos_inside = t == ChatTemplate::kLlama2SysBos;
  const bool strip = t == ChatTemplate::kLlama2SysStrip;
  bool inside_turn = true;  // the first [INST] is written up front; BOS comes from the tokenizer
  out += "[INST] ";
  for (const ChatMessage& m : messages) {
    const std::string_view content = strip ? trim(m.content) : std::string_view(m.content);
    if (!inside_turn) {
      inside_turn = true;
      out += bos_inside ? "<s>[INST] " : "[INST] ";
    }
    if (m.role == "system") {
      // Without <<SYS>> support the system text still leads the first user message.
      if (system_tags) {
        out += "<<SYS>>\n";
        out += content;
        out += "\n<</SYS>>\n\n";
      } else {
        out += content;
        out += "\n";
      }
    } else if (m.role == "user") {
      out += content;
      out += " [/INST]";
    } else {
      out += content;
      out += "</s>";
      inside_turn = false;
    }
  }
}

void format_mistral_v1_v3(std::string& out, ChatTemplate t, std::span<const ChatMessage> messages) {
  const std::string_view lead = t == ChatTemplate::kMistralV1 ? " " : "";
  const std::string_view trail = t == ChatTemplate::kMistralV3Tekken ? "" : " ";
  const bool trim_reply = t == ChatTemplate::kMistralV3;
  bool inside_turn = false;
  for (const ChatMessage& m : messages) {
    if (!inside_turn) {
      out += lead;
      out += "[INST]";
      out += trail;
      inside_turn = true;
    }
    if (m.role == "system") {
      out += m.content;
      out += "\n\n";
    } else if (m.role == "user") {
      out += m.content;
      out += lead;
      out += "[/INST]";
    } else {
      out += trail;
      out += trim_reply ? trim(m.content) : std::string_view(m.content);
      out += "</s>";
      inside_turn = false;
    }
  }
}

void format_mistral_v7(std::string& out, ChatTemplate t, std::span<const ChatMessage> messages) {
  const std::string_view space = t == ChatTemplate::kMistralV7 ? " " : "";
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      out += "[SYSTEM_PROMPT]";
      out += space;
      out += m.content;
      out += "[/SYSTEM_PROMPT]";
    } else if (m.role == "user") {
      out += "[INST]";
      out += space;
      out += m.content;
      out += "[/INST]";
    } else {
      out += space;
      out += m.content;
      out += "</s>";
    }
  }
}

void format_gemma(std::string& out, std::span<const ChatMessage> messages, bool add_assistant_prompt) {
  // Gemma has no system role: llama.cpp merges the system text into the next user turn.
  std::string system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system += trim(m.content);
      continue;
    }
    const std::string_view role = m.role == "assistant" ? "model" : std::string_view(m.role);
    out += "<start_of_turn>";
    out += role;
    out += "\n";
    if (!system.empty() && role != "model") {
      out += system;
      out += "\n\n";
      system.clear();
    }
    out += trim(m.content);
    out += "<end_of_turn>\n";
  }
  if (add_assistant_prompt) out += "<start_of_turn>model\n";
}

}  // namespace

std::span<const std::string_view> chat_template_names() {
  return kNames;
}

std::string chat_template_name_list() {
  std::string s;
  for (std::string_view n : kNames) {
    if (!s.empty()) s += ", ";
    s += n;
  }
  return s;
}

std::string_view chat_template_name(ChatTemplate t) {
  for (const Named& n : kNamed)
    if (n.t == t) return n.name;
  QE_CHECK(false);
  return {};
}

std::optional<ChatTemplate> chat_template_from_name(std::string_view name) {
  for (const Named& n : kNamed)
    if (n.name == name) return n.t;
  return std::nullopt;
}

Result<ChatTemplate> detect_chat_template(std::string_view jinja) {
  if (std::optional<ChatTemplate> t = chat_template_from_name(jinja)) return *t;
  const auto [t, family] = detect(jinja);
  if (t) return *t;
  // The caller's chat_template setting (a name) gets past this: the front end says how to give it.
  if (!family.empty())
    return Error{"", "tokenizer.chat_template",
                 fmt::format("recognised as llama.cpp's \"{}\" template, which qrun does not render", family),
                 "chat_template"};
  return Error{"", "tokenizer.chat_template", "not a chat template qrun recognises", "chat_template"};
}

Result<ChatTemplate> resolve_chat_template(std::string_view name,
                                           std::optional<std::string_view> gguf_template) {
  if (!name.empty()) {
    if (std::optional<ChatTemplate> t = chat_template_from_name(name)) return *t;
    return Error{"", "chat_template",
                 fmt::format("\"{}\" is not a template name ({})", name, chat_template_name_list()),
                 "chat_template"};
  }
  if (!gguf_template || gguf_template->empty()) return ChatTemplate::kChatml;
  return detect_chat_template(*gguf_template);
}

std::string format_chat(ChatTemplate t, std::span<const ChatMessage> messages, bool add_assistant_prompt) {
  std::string out;
  using T = ChatTemplate;
  switch (t) {
    case T::kChatml:
      for (const ChatMessage& m : messages)
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_assistant_prompt) out += "<|im_start|>assistant\n";
      break;
    case T::kLlama2:
    case T::kLlama2Sys:
    case T::kLlama2SysBos:
    case T::kLlama2SysStrip:
      format_llama2(out, t, messages);  // the user turn ends in [/INST]: nothing to add
      break;
    case T::kMistralV1:
    case T::kMistralV3:
    case T::kMistralV3Tekken:
      format_mistral_v1_v3(out, t, messages);
      break;
    case T::kMistralV7:
    case T::kMistralV7Tekken:
      format_mistral_v7(out, t, messages);
      break;
    case T::kPhi3:
      for (const ChatMessage& m : messages) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      if (add_assistant_prompt) out += "<|assistant|>\n";
      break;
    case T::kZephyr:
      for (const ChatMessage& m : messages) out += "<|" + m.role + "|>\n" + m.content + "<|endoftext|>\n";
      if (add_assistant_prompt) out += "<|assistant|>\n";
      break;
    case T::kGemma:
      format_gemma(out, messages, add_assistant_prompt);
      break;
    case T::kLlama3:
      for (const ChatMessage& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
        out += trim(m.content);
        out += "<|eot_id|>";
      }
      if (add_assistant_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
  }
  return out;
}

std::string assistant_turn_tail(ChatTemplate t, std::span<const ChatMessage> prompt_messages,
                                std::string_view reply) {
  const std::string before = format_chat(t, prompt_messages, /*add_assistant_prompt=*/true);
  std::vector<ChatMessage> with(prompt_messages.begin(), prompt_messages.end());
  with.push_back({"assistant", std::string(reply)});
  const std::string after = format_chat(t, with, /*add_assistant_prompt=*/false);
  // Every family renders the history with the reply as an extension of the prompt that asked for it;
  // should one not, the shared prefix is what the cache already holds.
  size_t common = 0;
  while (common < before.size() && common < after.size() && before[common] == after[common]) ++common;
  const std::string_view delta = std::string_view(after).substr(common);
  // The reply as generated first (the cache holds exactly it), then as a trimming template wrote it.
  for (const std::string_view body : {reply, trim(reply)}) {
    if (body.empty()) break;
    if (const size_t at = delta.find(body); at != std::string_view::npos)
      return std::string(delta.substr(at + body.size()));
  }
  return std::string(delta);
}

}  // namespace qe::tokenizer
