// libFuzzer target: chat templates: detection (detect_chat_template, resolve_chat_template) on an
// arbitrary template string or name, and rendering of arbitrary messages by every family. The input is
// parts separated by fuzz_common.h's kSectionSeparator: the template, then one "role\ncontent" part per
// message. Checks what a chat relies on: the prompt with the assistant header extends the one without,
// and assistant_turn_tail is what the history with the reply adds at its end.
// Seeds: tests/fuzz/corpus/chat_template (a real template of each family and a conversation).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "tokenizer/chat_template.h"

namespace tk = qe::tokenizer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = qe::fuzz::split_sections(qe::fuzz::as_text(data, size));
  const std::string_view tmpl = parts[0];
  std::vector<tk::ChatMessage> messages;
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto [role, content] = qe::fuzz::split_first_line(parts[i]);
    messages.push_back({std::string(role), std::string(content)});
  }
  uint64_t sum = 0;
  for (const qe::Result<tk::ChatTemplate>& t :
       {tk::detect_chat_template(tmpl), tk::resolve_chat_template(tmpl, std::nullopt),
        tk::resolve_chat_template("", std::optional<std::string_view>(tmpl))})
    sum += t ? static_cast<uint64_t>(*t) : t.error().message().size();

  // Every family, whatever the template says: the formatters take any roles and contents.
  for (std::string_view name : tk::chat_template_names()) {
    const tk::ChatTemplate t = *tk::chat_template_from_name(name);
    QE_CHECK(tk::chat_template_name(t) == name);
    const std::string open = tk::format_chat(t, messages, /*add_assistant_prompt=*/true);
    const std::string closed = tk::format_chat(t, messages, /*add_assistant_prompt=*/false);
    QE_CHECK(open.starts_with(closed));
    // The last message as the reply to the ones before it.
    if (!messages.empty()) {
      const std::span<const tk::ChatMessage> history(messages.data(), messages.size() - 1);
      const std::string tail = tk::assistant_turn_tail(t, history, messages.back().content);
      std::vector<tk::ChatMessage> with(history.begin(), history.end());
      with.push_back({"assistant", messages.back().content});
      QE_CHECK(tk::format_chat(t, with, false).ends_with(tail));
      sum += tail.size();
    }
    sum += open.size();
  }
  qe::fuzz::sink(sum);
  return 0;
}
