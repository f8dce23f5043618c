// chat_format_tool: our chat template detection and formatting, for tests/python/test_chat_template.py.
// Reads one JSON object on stdin:
//   {"template": "<Jinja string or llama.cpp name>", "messages": [{"role": ..., "content": ...}, ...],
//    "add_generation_prompt": true}
// and writes {"name": "<detected family>", "prompt": "<formatted>"} or {"error": "<message>"} to stdout.
// The error is worded as qrun's chat mode words it: the library names option "chat_template", the front
// end adds its flag and the names.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/flag_errors.h"
#include "tokenizer/chat_template.h"

int main() {
  using nlohmann::json;
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  json in;
  try {
    in = json::parse(input);
  } catch (const json::exception& e) {
    std::fprintf(stderr, "chat_format_tool: bad JSON on stdin: %s\n", e.what());
    return 2;
  }
  json out;
  qe::Result<qe::tokenizer::ChatTemplate> t =
      qe::tokenizer::detect_chat_template(in.value("template", std::string()));
  if (!t) {
    const std::string choose =
        "; choose one with --chat-template (" + qe::tokenizer::chat_template_name_list() + ")";
    out["error"] = qe::cli::with_flags(t.error(), {{"chat_template", "", choose}}).message();
  } else {
    std::vector<qe::tokenizer::ChatMessage> messages;
    for (const json& m : in.value("messages", json::array()))
      messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    out["name"] = std::string(qe::tokenizer::chat_template_name(*t));
    out["prompt"] = qe::tokenizer::format_chat(*t, messages, in.value("add_generation_prompt", true));
  }
  std::cout << out.dump() << "\n";
  return 0;
}
