// libFuzzer target: a tool reply read back (model/chat_tools.h), whole and cut (healed where it stops:
// model/partial_json.h), on arbitrary bytes. A model's reply reaches this code; so does a request's tool
// call arguments (read as JSON when the history is written out), which the second half covers.
// Seeds: tests/fuzz/corpus/tool_reply (calls, answers, replies cut at many points).
#include <cstddef>
#include <cstdint>

#include "fuzz_common.h"
#include "model/chat_tools.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = qe::fuzz::as_text(data, size);
  for (bool partial : {false, true}) {
    const qe::model::ToolReply r = qe::model::parse_tool_reply(text, partial);
    size_t n = r.content.size();
    for (const qe::model::ToolCall& c : r.calls) n += c.name.size() + c.arguments.size();
    qe::fuzz::sink(n);
  }
  const std::vector<qe::model::ToolChatMessage> history = {
      {"assistant", std::nullopt, {{"id", "f", std::string(text)}}, {}, {}},
      {"tool", std::string(text), {}, "f", "id"}};
  qe::Result<qe::model::ToolChat> chat = qe::model::tool_chat(history, {}, "");
  qe::fuzz::sink(chat ? chat->messages.size() : 0);
  return 0;
}
