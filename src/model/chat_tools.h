// Tool calls (OpenAI's "tools") for chat templates that have no tool format of their own, as llama-server
// --jinja asks a model for them and reads them back: llama.cpp's "generic" format (common/chat.cpp) on
// top of minja's polyfills (vendor/minja/chat-template.hpp). None of the formatters of
// tokenizer/chat_template.h writes tools, tool calls or tool results, so for every one of them:
//
//   - the tools are described in the system message ("You can call any of the following tools ...", the
//     tools as JSON, and an example call written the way the template writes an assistant turn), after
//     llama.cpp's "Respond in JSON format, either with `tool_call` ... or with `response` ...";
//   - an assistant turn that called tools is written as the JSON {"tool_calls": [...]}, and a tool's
//     result as a user turn {"tool_response": {...}};
//   - the reply is constrained by a grammar to {"tool_call": {"name", "arguments"}} or {"response": ...}
//     (only the tool call when tool_choice is "required"), and read back as a tool call or content.
//
// For a template whose Jinja renders as its formatter does (ChatML: SmolLM2, Qwen without tools), the
// prompt is byte for byte llama-server's (tests/python/test_llamacpp_parity.py asks its /apply-template).
// llama-server gives some templates a native format instead (Hermes 2 Pro / Qwen 2.5 `<tool_call>`,
// Llama 3.x, Mistral Nemo, ...); with those this generic one is used, which any model can follow since
// the grammar holds it to the form. Parallel calls are never asked for: llama.cpp turns them off for a
// template that does not write several calls itself, which is every template here.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "tokenizer/chat_template.h"

namespace qe::model {

// A function the model may call: OpenAI's {"type": "function", "function": {name, description,
// parameters}}, parameters a JSON schema in its own key order (the prompt shows it as given).
struct ToolFunction {
  std::string name;
  std::string description;
  nlohmann::ordered_json parameters;
};

// A call: the function's name and its arguments as JSON text (OpenAI sends and expects a string).
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;
};

// A chat message as OpenAI's API carries it: role system, user, assistant or tool.
struct ToolChatMessage {
  std::string role;
  std::optional<std::string> content;  // null: an assistant turn that only called tools
  std::vector<ToolCall> tool_calls;    // assistant
  std::string name;                    // tool: the function that answered ("" = not given)
  std::string tool_call_id;            // tool ("" = not given)
};

enum class ToolChoice {
  automatic,  // a call or an answer, as the model chooses
  none,       // an answer only (the tools are still described)
  required,   // a call
};

struct ToolRequest {
  std::span<const ToolFunction> tools;
  ToolChoice choice = ToolChoice::automatic;
  std::string only;  // with required: the one function that may be called ("" = any)
  // The answer's schema (a request's response_format with tools): its "response" is then this JSON
  // value, not a string. Null: a string.
  const nlohmann::ordered_json* response_schema = nullptr;
};

// What the template writes for an assistant turn that calls a tool, found as minja finds it: the text
// an example call adds after the generation prompt (the end-of-turn marker `eos` cut off).
std::string tool_call_example(tokenizer::ChatTemplate t, std::string_view eos);

// The chat's messages for the template, and the reply's grammar.
struct ToolChat {
  std::vector<tokenizer::ChatMessage> messages;
  std::string grammar;      // GBNF; "" when the reply is free text (no tools, or tool_choice none)
  bool tool_reply = false;  // the reply is read with parse_tool_reply
};
// Error (option "tools"; field "tools"): parameters nesting past kMaxJsonDepth, or a schema the grammar
// converter refuses; (field "tool_choice") `only` naming no function of `tools`.
Result<ToolChat> tool_chat(std::span<const ToolChatMessage> messages, const ToolRequest& request,
                           std::string_view example);

// A reply read back (llama.cpp's common_chat_parse_generic): {"tool_call": ...} is a call (arguments
// written compactly), {"response": ...} content (a string, or other JSON written indented). `partial`: the
// reply did not end with an end of generation (a length limit, a stop string, or a stream still being
// generated): it is healed where it stops (partial_json.h) and gives what was read, a call's arguments
// and the answer cut there; llama-server reads a reply so unless it ended with an end of generation. A
// whole reply that is neither is content as it is.
struct ToolReply {
  std::string content;
  std::vector<ToolCall> calls;  // ids left empty: the server names them
};
ToolReply parse_tool_reply(std::string_view text, bool partial);

}  // namespace qe::model
