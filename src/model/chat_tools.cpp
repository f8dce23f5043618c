#include "model/chat_tools.h"

#include <fmt/core.h>

#include <algorithm>

#include "model/json_schema_grammar.h"
#include "model/partial_json.h"

namespace qe::model {
namespace {

using ojson = nlohmann::ordered_json;
using tokenizer::ChatMessage;

// llama.cpp's words (common/chat.cpp, common_chat_params_init_generic; minja's polyfill_tools).
constexpr std::string_view kRespondInJson =
    "Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` reply to "
    "the user's request";
constexpr std::string_view kToolsIntro =
    "You can call any of the following tools to satisfy the user's requests: ";

// JSON as minja's Value::dump(indent, to_json) writes it: nlohmann's indented form, except that an empty
// array or object still opens a line (`[\n    \n  ]`), which the prompt of a tool without parameters shows.
void minja_dump(const ojson& v, int indent, int level, std::string& out) {
  const auto new_line = [&](int at) {
    out += '\n';
    out.append(static_cast<size_t>(at * indent), ' ');
  };
  if (v.is_array() || v.is_object()) {
    out += v.is_array() ? '[' : '{';
    new_line(level + 1);
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) {
        out += ',';
        new_line(level + 1);
      }
      first = false;
      if (v.is_object()) out += ojson(it.key()).dump(-1, ' ', false, ojson::error_handler_t::replace) + ": ";
      minja_dump(*it, indent, level + 1, out);
    }
    new_line(level);
    out += v.is_array() ? ']' : '}';
  } else {
    out += v.dump(-1, ' ', false, ojson::error_handler_t::replace);
  }
}

// The tools as llama.cpp hands them to the template (common_chat_tools_to_json_oaicompat).
ojson tools_json(std::span<const ToolFunction> tools) {
  ojson out = ojson::array();
  for (const ToolFunction& f : tools)
    out.push_back(
        {{"type", "function"},
         {"function", {{"name", f.name}, {"description", f.description}, {"parameters", f.parameters}}}});
  return out;
}

// minja's chat_template::add_system: appended to a leading system message, or one put first.
void add_system(std::vector<ToolChatMessage>& messages, std::string_view text) {
  if (!messages.empty() && messages[0].role == "system") {
    messages[0].content = messages[0].content.value_or("") + "\n\n" + std::string(text);
  } else {
    messages.insert(messages.begin(), ToolChatMessage{"system", std::string(text), {}, {}, {}});
  }
}

// nlohmann's indented dump (minja's for what it writes into a message); text that is not UTF-8 (the
// caller's: a request's is checked before) is written with U+FFFD, where nlohmann would throw.
std::string dump_text(const ojson& v) {
  return v.dump(2, ' ', false, ojson::error_handler_t::replace);
}

// A message as the template sees it once minja has written what it cannot: calls as JSON in the
// assistant's content, a tool's result as a user turn. llama.cpp gives empty content as null first.
ChatMessage polyfilled(const ToolChatMessage& m) {
  const bool has_content = m.content && !m.content->empty();
  if (!m.tool_calls.empty()) {
    ojson calls = ojson::array();
    for (const ToolCall& c : m.tool_calls) {
      // Arguments that are JSON are shown as JSON, others as the string they are.
      ojson args = ojson::parse(c.arguments, nullptr, /*allow_exceptions=*/false);
      if (args.is_discarded() || json_depth(args, kMaxJsonDepth) > kMaxJsonDepth) args = c.arguments;
      ojson call = {{"name", c.name}, {"arguments", std::move(args)}};
      if (!c.id.empty()) call["id"] = c.id;
      calls.push_back(std::move(call));
    }
    ojson obj = {{"tool_calls", std::move(calls)}};
    if (has_content) obj["content"] = *m.content;
    return {m.role, dump_text(obj)};
  }
  if (m.role == "tool") {
    ojson response = ojson::object();
    if (!m.name.empty()) response["tool"] = m.name;
    response["content"] = has_content ? ojson(*m.content) : ojson(nullptr);
    if (!m.tool_call_id.empty()) response["tool_call_id"] = m.tool_call_id;
    return {"user", dump_text(ojson{{"tool_response", std::move(response)}})};
  }
  return {m.role, m.content.value_or("")};
}

// The reply's schema (common_chat_params_init_generic, without parallel calls).
ojson reply_schema(std::span<const ToolFunction> tools, const ToolRequest& request) {
  ojson calls = ojson::array();
  for (const ToolFunction& f : tools) {
    if (!request.only.empty() && f.name != request.only) continue;
    ojson s = {
        {"type", "object"},
        {"properties", {{"name", {{"type", "string"}, {"const", f.name}}}, {"arguments", f.parameters}}},
        {"required", {"name", "arguments"}}};
    s["description"] = f.description;
    calls.push_back(std::move(s));
  }
  ojson one = calls.size() == 1 ? calls[0] : ojson{{"anyOf", calls}};
  ojson call = {
      {"type", "object"}, {"properties", {{"tool_call", std::move(one)}}}, {"required", {"tool_call"}}};
  if (request.choice == ToolChoice::required) return call;
  ojson response = request.response_schema ? *request.response_schema : ojson{{"type", "string"}};
  ojson answer = {
      {"type", "object"}, {"properties", {{"response", std::move(response)}}}, {"required", {"response"}}};
  return {{"anyOf", ojson::array({std::move(call), std::move(answer)})}};
}

// llama.cpp's common_chat_msg_parser::add_tool_call: a call needs a name; object arguments are written
// compactly, string ones kept.
bool add_call(const ojson& c, ToolReply& out) {
  if (!c.is_object()) return false;
  const auto name = c.find("name");
  if (name == c.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) return false;
  ToolCall call{"", name->get<std::string>(), ""};
  if (const auto id = c.find("id"); id != c.end() && id->is_string()) call.id = id->get<std::string>();
  if (const auto args = c.find("arguments"); args != c.end())
    call.arguments = args->is_string() ? args->get<std::string>() : args->dump();
  out.calls.push_back(std::move(call));
  return true;
}

// llama.cpp's consume_json_with_dumped_args for the generic format: a call's "arguments" become their
// compact dump (cut where the reply was cut), the answer's "response" string is cut there too, and
// anything else the cut reached (a key, a string) is left out.
struct Cleaner {
  const std::string& marker;       // in a string
  const std::string& dump_marker;  // in a dump ("" when the reply was whole)
  bool partial;
  bool cut = false;  // the cut was met: what was read is not whole
  std::vector<std::string> path;

  bool at(std::initializer_list<std::string_view> p) const {
    return std::equal(path.begin(), path.end(), p.begin(), p.end());
  }
  bool arguments() const { return at({"tool_call", "arguments"}) || at({"tool_calls", "arguments"}); }
  bool response() const { return at({"response"}); }

  ojson value(const ojson& j) {
    if (arguments()) {
      std::string args = j.dump();
      if (partial && !dump_marker.empty()) {
        if (const size_t at_cut = args.find(dump_marker); at_cut != std::string::npos) {
          args.resize(at_cut);
          cut = true;
        }
        if (args == "\"") args.clear();  // the cut came right after "arguments":
      }
      return args;
    }
    if (response() && j.is_string()) return string_until_cut(j.get<std::string>());
    if (j.is_object()) {
      ojson obj = ojson::object();
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key().find(marker) != std::string::npos) {
          cut = true;
          break;
        }
        path.push_back(it.key());
        if (it->is_string() && it->get_ref<const std::string&>().find(marker) != std::string::npos) {
          cut = true;
          // Kept only where the cut was inside the answer's string itself.
          if (response() && marker == dump_marker) obj[it.key()] = string_until_cut(it->get<std::string>());
          path.pop_back();
          break;
        }
        obj[it.key()] = it->is_string() ? *it : value(*it);
        path.pop_back();
      }
      return obj;
    }
    if (j.is_array()) {
      ojson arr = ojson::array();
      for (const ojson& e : j) {
        if (e.is_string() && e.get_ref<const std::string&>().find(marker) != std::string::npos) {
          cut = true;
          break;
        }
        arr.push_back(value(e));
      }
      return arr;
    }
    return j;
  }

  std::string string_until_cut(std::string s) {
    if (const size_t at_cut = s.find(marker); at_cut != std::string::npos) {
      s.resize(at_cut);
      cut = true;
    }
    return s;
  }
};

}  // namespace

std::string tool_call_example(tokenizer::ChatTemplate t, std::string_view eos) {
  // minja renders a user turn with the generation prompt, and the same with an assistant turn that calls
  // a tool (written by its polyfill), and keeps what the second adds.
  const std::vector<ChatMessage> user = {{"user", "Hey"}};
  const std::string prefix = tokenizer::format_chat(t, user, true);
  const ToolChatMessage call_msg{
      "assistant", std::nullopt, {{"call_1___", "tool_name", R"({"arg1": "some_value"})"}}, {}, {}};
  const std::vector<ChatMessage> with_call = {user[0], polyfilled(call_msg)};
  std::string full = tokenizer::format_chat(t, with_call, false);
  if (!eos.empty()) {
    const size_t last = full.rfind(eos);
    if (last != std::string::npos &&
        (last + eos.size() == prefix.size() || (full.back() == '\n' && last + eos.size() + 1 == full.size())))
      full.resize(last);
  }
  // The common prefix, never ending on a '<' (minja's allowance for a template that opens a tag after the
  // generation prompt, as DeepSeek R1's <think>).
  size_t common = 0;
  for (size_t i = 0; i < prefix.size() && i < full.size() && prefix[i] == full[i]; ++i)
    if (prefix[i] != '<') common = i + 1;
  std::string example = full.substr(common);
  if (example.find("tool_name") == std::string::npos && example.find("some_value") == std::string::npos)
    return {};
  return example;
}

Result<ToolChat> tool_chat(std::span<const ToolChatMessage> messages, const ToolRequest& request,
                           std::string_view example) {
  std::vector<ToolChatMessage> msgs(messages.begin(), messages.end());
  ToolChat out;
  if (!request.tools.empty()) {
    for (const ToolFunction& f : request.tools)
      if (json_depth(f.parameters, kMaxJsonDepth) > kMaxJsonDepth)
        return Error{"", "tools",
                     fmt::format("the parameters of '{}' nest deeper than {} levels", printable(f.name),
                                 kMaxJsonDepth),
                     "tools"};
    if (!request.only.empty() && std::none_of(request.tools.begin(), request.tools.end(),
                                              [&](const ToolFunction& f) { return f.name == request.only; }))
      return Error{"", "tool_choice", fmt::format("no tool is named '{}'", printable(request.only)), "tools"};
    if (request.choice != ToolChoice::none) {
      add_system(msgs, kRespondInJson);
      Result<std::string> g = json_schema_to_grammar(reply_schema(request.tools, request));
      if (!g) return Error{"", "tools", g.error().reason, "tools"};
      out.grammar = std::move(*g);
      out.tool_reply = true;
    }
    std::string text(kToolsIntro);
    minja_dump(tools_json(request.tools), 2, 0, text);
    if (!example.empty()) text += fmt::format("\n\nExample tool call syntax:\n\n{}\n\n", example);
    add_system(msgs, text);
  }
  out.messages.reserve(msgs.size());
  for (const ToolChatMessage& m : msgs) out.messages.push_back(polyfilled(m));
  return out;
}

ToolReply parse_tool_reply(std::string_view text, bool partial) {
  // A marker the text does not hold, where a cut reply is healed (partial_json.h).
  std::string marker = "$qe.json.cut$";
  while (text.find(marker) != std::string_view::npos) marker += '$';
  ToolReply out;
  bool whole = false;
  // A reply nesting past kMaxJsonDepth (a schema's "{}" lets it) is not read: the walk and dump below recurse.
  if (const std::optional<PartialJson> j = parse_partial_json(text, marker);
      j && (partial || j->dump_marker.empty()) && j->value.is_object() &&
      json_depth(j->value, kMaxJsonDepth) <= kMaxJsonDepth) {
    Cleaner clean{marker, j->dump_marker, partial, false, {}};
    const ojson v = clean.value(j->value);
    if (const auto calls = v.find("tool_calls"); calls != v.end()) {
      whole = calls->is_array();
      if (whole)
        for (const ojson& c : *calls) whole = whole && add_call(c, out);
    } else if (const auto call = v.find("tool_call"); call != v.end()) {
      whole = add_call(*call, out);
    } else if (const auto r = v.find("response"); r != v.end()) {
      out.content = r->is_string() ? r->get<std::string>() : r->dump(2);
      whole = true;
    }
    whole = whole && !clean.cut;
  }
  // As llama.cpp: a whole reply that does not read as one is content as it is; a cut one keeps what
  // was read of it.
  if (!whole && !partial) return {std::string(text), {}};
  return out;
}

}  // namespace qe::model
