#include "cli/qserve/api.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <span>

#include "model/batch_engine.h"
#include "model/json_schema_grammar.h"
#include "tokenizer/utf8.h"

namespace qe::cli::serve {
namespace {

using nlohmann::json;

// Thrown inside parse_request only; parse_request turns it into its result.
struct Invalid {
  ApiError error;
};

[[noreturn]] void fail(std::string param, std::string message) {
  throw Invalid{ApiError{400, std::move(message), std::move(param), "", "invalid_request_error"}};
}

// A field that is absent or null is "not given" (OpenAI's clients send null for defaults).
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) fail(name, fmt::format("'{}' must be a number", name));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    fail(name, fmt::format("'{}' is {}; it must be between {} and {}", name, x, lo, hi));
  return x;
}

std::optional<bool> boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) fail(name, fmt::format("'{}' must be a boolean", name));
  return v->get<bool>();
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) fail(name, fmt::format("'{}' must be an integer", name));
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    fail(name, fmt::format("'{}' must be between {} and {}", name, lo, hi));
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) fail(name, fmt::format("'{}' is {}; it must be between {} and {}", name, x, lo, hi));
  return x;
}

std::string text_content(const json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return {};
  if (!content.is_array()) fail(param, "message content must be a string or an array of text parts");
  std::string text;
  for (const json& part : content) {
    const json* type = part.is_object() ? field(part, "type") : nullptr;
    const json* t = part.is_object() ? field(part, "text") : nullptr;
    if (!type || *type != "text" || !t || !t->is_string())
      fail(param, "only text content parts ({\"type\": \"text\", \"text\": \"...\"}) are supported");
    text += t->get<std::string>();
  }
  return text;
}

// The string field `name` of `obj`, or "" when it is absent or null.
std::string optional_string(const json& obj, const char* name, const std::string& param) {
  const json* v = field(obj, name);
  if (!v) return {};
  if (!v->is_string()) fail(param + "." + name, fmt::format("'{}' must be a string", name));
  return v->get<std::string>();
}

// An assistant turn's calls: [{"id", "type": "function", "function": {"name", "arguments": "JSON"}}].
std::vector<model::ToolCall> tool_calls(const json& calls, const std::string& param) {
  if (!calls.is_array()) fail(param, "'tool_calls' must be an array");
  std::vector<model::ToolCall> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string p = fmt::format("{}[{}]", param, i);
    const json& c = calls[i];
    if (!c.is_object()) fail(p, "each tool call must be an object");
    if (const json* type = field(c, "type"); type && *type != "function")
      fail(p + ".type", "only tool calls of type 'function' are supported");
    const json* f = field(c, "function");
    if (!f || !f->is_object()) fail(p + ".function", "each tool call needs a 'function' object");
    model::ToolCall call{optional_string(c, "id", p), optional_string(*f, "name", p + ".function"),
                         optional_string(*f, "arguments", p + ".function")};
    if (call.name.empty()) fail(p + ".function.name", "each tool call needs a function 'name'");
    out.push_back(std::move(call));
  }
  return out;
}

std::vector<model::ToolChatMessage> messages(const json& body) {
  const json* m = field(body, "messages");
  if (!m) fail("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) fail("messages", "'messages' must be a non-empty array");
  std::vector<model::ToolChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const std::string param = fmt::format("messages[{}]", i);
    const json& msg = (*m)[i];
    if (!msg.is_object()) fail(param, "each message must be an object");
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) fail(param + ".role", "each message needs a 'role' string");
    model::ToolChatMessage t;
    t.role = role->get<std::string>();
    if (t.role == "developer") t.role = "system";  // OpenAI's newer name for the system message
    if (t.role != "system" && t.role != "user" && t.role != "assistant" && t.role != "tool")
      fail(param + ".role",
           fmt::format("role '{}' is not supported (system, user, assistant, tool)", printable(t.role)));
    if (const json* content = field(msg, "content")) t.content = text_content(*content, param + ".content");
    if (const json* calls = field(msg, "tool_calls")) {
      if (t.role != "assistant") fail(param + ".tool_calls", "only an assistant message has 'tool_calls'");
      t.tool_calls = tool_calls(*calls, param + ".tool_calls");
    }
    if (t.role == "tool") {
      t.name = optional_string(msg, "name", param);
      t.tool_call_id = optional_string(msg, "tool_call_id", param);
    }
    out.push_back(std::move(t));
  }
  return out;
}

// The functions of "tools" ([{"type": "function", "function": {name, description, parameters}}]), read
// from the body in its own key order (a function's parameters are shown to the model as written).
std::vector<model::ToolFunction> tool_functions(const nlohmann::ordered_json& tools) {
  constexpr size_t kMaxTools = 128;  // OpenAI's limit
  if (!tools.is_array()) fail("tools", "'tools' must be an array");
  if (tools.size() > kMaxTools) fail("tools", fmt::format("'tools' holds at most {} functions", kMaxTools));
  std::vector<model::ToolFunction> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = fmt::format("tools[{}]", i);
    const nlohmann::ordered_json& t = tools[i];
    if (!t.is_object()) fail(p, "each tool must be an object");
    const auto type = t.find("type");
    if (type == t.end() || *type != "function")
      fail(p + ".type", "only tools of type 'function' are supported");
    const auto f = t.find("function");
    if (f == t.end() || !f->is_object()) fail(p + ".function", "each tool needs a 'function' object");
    model::ToolFunction fn;
    const auto name = f->find("name");
    if (name == f->end() || !name->is_string() || name->get_ref<const std::string&>().empty())
      fail(p + ".function.name", "each function needs a 'name' string");
    fn.name = name->get<std::string>();
    for (const model::ToolFunction& before : out)
      if (before.name == fn.name)
        fail(p + ".function.name", fmt::format("two tools are named '{}'", printable(fn.name)));
    if (const auto d = f->find("description"); d != f->end() && !d->is_null()) {
      if (!d->is_string()) fail(p + ".function.description", "'description' must be a string");
      fn.description = d->get<std::string>();
    }
    // OpenAI: parameters left out = a function that takes none.
    fn.parameters = {{"type", "object"}, {"properties", nlohmann::ordered_json::object()}};
    if (const auto params = f->find("parameters"); params != f->end() && !params->is_null()) {
      if (!params->is_object())
        fail(p + ".function.parameters", "'parameters' must be an object (a JSON schema)");
      fn.parameters = *params;
    }
    out.push_back(std::move(fn));
  }
  return out;
}

// OpenAI's tool_choice: "auto", "none", "required", or {"type": "function", "function": {"name"}} (that
// function must be called).
model::ToolRequest tool_choice(const json& body) {
  model::ToolRequest r;
  const json* c = field(body, "tool_choice");
  if (!c) return r;
  if (c->is_string()) {
    const std::string& s = c->get_ref<const std::string&>();
    if (s == "none")
      r.choice = model::ToolChoice::none;
    else if (s == "required")
      r.choice = model::ToolChoice::required;
    else if (s != "auto")
      fail("tool_choice", fmt::format("'tool_choice' '{}' is not one of auto, none, required", printable(s)));
    return r;
  }
  const json* f = c->is_object() ? field(*c, "function") : nullptr;
  const json* name = f && f->is_object() ? field(*f, "name") : nullptr;
  if (!name || !name->is_string())
    fail("tool_choice",
         "'tool_choice' must be auto, none, required or {\"type\": \"function\", "
         "\"function\": {\"name\": ...}}");
  r.choice = model::ToolChoice::required;
  r.only = name->get<std::string>();
  return r;
}

std::vector<std::string> stop_strings(const json& body) {
  const json* s = field(body, "stop");
  if (!s) return {};
  constexpr size_t kMaxStops = 16;  // OpenAI allows 4; llama-server any number
  std::vector<std::string> out;
  auto add = [&](const json& v) {
    if (!v.is_string()) fail("stop", "'stop' must be a string or an array of strings");
    if (!v.get_ref<const std::string&>().empty()) out.push_back(v.get<std::string>());
  };
  if (s->is_array()) {
    if (s->size() > kMaxStops) fail("stop", fmt::format("'stop' holds at most {} strings", kMaxStops));
    for (const json& v : *s) add(v);
  } else {
    add(*s);
  }
  return out;
}

// An array of token ids of this model's vocabulary, as `param` (a prompt, /detokenize).
std::vector<int32_t> token_ids(const json& a, int64_t n_vocab, const char* param) {
  std::vector<int32_t> ids;
  for (const json& t : a) {
    if (!t.is_number_integer() ||
        (t.is_number_unsigned() && t.get<uint64_t>() >= static_cast<uint64_t>(n_vocab)) ||
        t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab)
      fail(param,
           fmt::format("'{}' holds {}, not a token id of this model (0..{})", param, t.dump(), n_vocab - 1));
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

// OpenAI's {"token id": bias}, each bias -100..100, added to the token's logit before sampling (-100
// is as good as a ban). Replaces the server's --logit-bias when given, as in llama-server.
std::vector<model::LogitBias> logit_bias(const json& body, int64_t n_vocab) {
  const json* lb = field(body, "logit_bias");
  if (!lb) return {};
  constexpr size_t kMaxBiases = 1024;  // OpenAI allows 300: each one is applied at every token
  if (!lb->is_object()) fail("logit_bias", "'logit_bias' must be an object of token ids to numbers");
  if (lb->size() > kMaxBiases)
    fail("logit_bias", fmt::format("'logit_bias' holds at most {} tokens", kMaxBiases));
  std::vector<model::LogitBias> out;
  for (const auto& [key, v] : lb->items()) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id >= n_vocab)
      fail("logit_bias",
           fmt::format("'logit_bias' key '{}' is not a token id of this model (0..{})", key, n_vocab - 1));
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < -100 || v.get<double>() > 100)
      fail("logit_bias", fmt::format("'logit_bias' of token {} must be a number between -100 and 100", id));
    out.push_back({static_cast<int32_t>(id), v.get<float>()});
  }
  return out;
}

// Fields of OpenAI's that ask for what this server does not do get an error, not a silently different
// answer (fields it does not know at all are ignored, as OpenAI does).
void refuse_unsupported(const json& body, Endpoint endpoint) {
  if (const json* f = field(body, "functions"); f && !(f->is_array() && f->empty()))
    fail("functions", "'functions' (the deprecated form of tools) is not supported; give 'tools'");
  if (endpoint != Endpoint::completion) return;
  if (const json* f = field(body, "tools"); f && !(f->is_array() && f->empty()))
    fail("tools", "'tools' are for chat completions (/v1/chat/completions)");
  if (boolean(body, "echo").value_or(false)) fail("echo", "'echo' is not supported");
  if (auto n = integer(body, "best_of", 0, std::numeric_limits<int32_t>::max()); n && *n > 1)
    fail("best_of", "only best_of = 1 is supported");
  if (const json* f = field(body, "suffix");
      f && !(f->is_string() && f->get_ref<const std::string&>().empty()))
    fail("suffix", "'suffix' (insertion) is not supported");
}

// The request's constraint on its output, as llama-server reads it: "grammar" (GBNF), "json_schema", or
// OpenAI's response_format ({"type": "json_object"} any JSON object, or a "schema" there;
// {"type": "json_schema", "json_schema": {"schema": ...}}). A schema is read from the body in its own key
// order (properties are written in that order).
struct OutputConstraint {
  std::string gbnf;                              // "grammar" ("" = not given)
  std::optional<nlohmann::ordered_json> schema;  // a JSON schema (nullopt = not given)
  std::string param;                             // the field it came from
};

OutputConstraint output_constraint(const json& body,
                                   const std::function<const nlohmann::ordered_json&()>& ordered) {
  const json* grammar = field(body, "grammar");
  if (grammar && !grammar->is_string()) fail("grammar", "'grammar' must be a string (GBNF)");
  const bool has_grammar = grammar && !grammar->get_ref<const std::string&>().empty();
  // Where the schema is in the body, if anywhere: a path of keys.
  std::vector<std::string> path;
  if (const json* js = field(body, "json_schema"); js && !js->is_null()) {
    if (!js->is_object()) fail("json_schema", "'json_schema' must be an object (a JSON schema)");
    path = {"json_schema"};
  }
  if (const json* rf = field(body, "response_format")) {
    const json* type = rf->is_object() ? field(*rf, "type") : nullptr;
    if (!type || !type->is_string())
      fail("response_format",
           "'response_format' must be an object with a 'type': text, json_object or json_schema");
    const std::string& t = type->get_ref<const std::string&>();
    if (t == "json_object") {
      path = {"response_format", "schema"};
    } else if (t == "json_schema") {
      const json* w = field(*rf, "json_schema");
      if (!w || !w->is_object())
        fail("response_format", "'response_format' of type json_schema needs a 'json_schema' object");
      path = {"response_format", "json_schema", "schema"};
    } else if (t != "text") {
      fail("response_format",
           fmt::format("response_format type '{}' is not one of text, json_object, json_schema",
                       printable(t)));
    }
  }
  if (has_grammar && !path.empty())
    fail("grammar", "'grammar' and a JSON schema both constrain the output; give one");
  if (has_grammar) return {grammar->get<std::string>(), std::nullopt, "grammar"};
  if (path.empty()) return {};
  // A schema left out (json_object) is {}.
  const nlohmann::ordered_json* schema = &ordered();
  for (const std::string& key : path) {
    const auto it = schema->find(key);
    if (it == schema->end()) {
      static const nlohmann::ordered_json kAnyObject = nlohmann::ordered_json::object();
      schema = &kAnyObject;
      break;
    }
    schema = &*it;
  }
  std::string param = path[0];
  for (size_t i = 1; i < path.size(); ++i) param += "." + path[i];
  if (!schema->is_object()) fail(param, fmt::format("'{}' must be an object (a JSON schema)", param));
  return {"", *schema, param};
}

std::shared_ptr<const model::Grammar> parsed_grammar(std::string_view gbnf, const std::string& param) {
  Result<std::shared_ptr<const model::Grammar>> g = model::Grammar::parse(gbnf);
  if (!g) fail(param, fmt::format("'{}': {}: {}", param, g.error().field, g.error().reason));
  return *g;
}

json object_body(std::string_view body_text) {
  // nlohmann's parser rejects ill-formed UTF-8 inside strings, so invalid UTF-8 is a parse error too.
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) fail("", "the body is not valid JSON (UTF-8)");
  if (!body.is_object()) fail("", "the body must be a JSON object");
  return body;
}

// Runs a parser that throws Invalid, as its Parsed result.
template <class Request, class Parse>
Parsed<Request> parsed(Parse&& parse) {
  try {
    return {parse(), {}};
  } catch (const Invalid& e) {
    return {std::nullopt, e.error};
  } catch (const json::exception& e) {  // a conversion the checks did not foresee
    return {std::nullopt, ApiError{400, e.what(), "", "", "invalid_request_error"}};
  }
}

ParsedRequest parse(std::string_view body_text, Endpoint endpoint, const RequestLimits& limits) {
  const json body = object_body(body_text);
  // The body again in its own key order, parsed when a schema or tools are read from it (properties and
  // a tool's parameters are written in that order).
  std::optional<nlohmann::ordered_json> ordered_body;
  const auto ordered = [&]() -> const nlohmann::ordered_json& {
    if (!ordered_body) ordered_body = nlohmann::ordered_json::parse(body_text);
    return *ordered_body;
  };
  ParsedRequest r;
  r.endpoint = endpoint;
  refuse_unsupported(body, endpoint);
  const OutputConstraint constraint = output_constraint(body, ordered);
  std::shared_ptr<const model::Grammar> grammar;
  if (endpoint == Endpoint::chat) {
    std::vector<model::ToolFunction> tools;
    if (field(body, "tools")) tools = tool_functions(ordered().at("tools"));
    model::ToolRequest tr = tool_choice(body);
    if (!tr.only.empty() && tools.empty())
      fail("tool_choice", "'tool_choice' names a function but there are no 'tools'");
    boolean(body, "parallel_tool_calls");  // checked; none of the templates writes several calls
    tr.tools = tools;
    if (!tools.empty() && tr.choice != model::ToolChoice::none) {
      if (!constraint.gbnf.empty()) fail("grammar", "'grammar' cannot constrain a reply that may call tools");
      if (constraint.schema) tr.response_schema = &*constraint.schema;
    }
    Result<model::ToolChat> chat = model::tool_chat(messages(body), tr, limits.tool_call_example);
    if (!chat) fail(chat.error().field, chat.error().reason);
    r.messages = std::move(chat->messages);
    r.tool_reply = chat->tool_reply;
    if (r.tool_reply) grammar = parsed_grammar(chat->grammar, "tools");
  } else {
    const json* p = field(body, "prompt");
    if (!p) fail("prompt", "'prompt' is required");
    // One prompt, in any of OpenAI's forms: "text", ["text"], token ids [1, 2], [[1, 2]].
    if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
    if (p->is_array() && !p->empty()) {
      r.prompt_ids = token_ids(*p, limits.n_vocab, "prompt");
    } else {
      if (!p->is_string()) fail("prompt", "'prompt' must be a string or an array of token ids (one prompt)");
      r.prompt = p->get<std::string>();
      if (r.prompt.empty()) fail("prompt", "'prompt' must not be empty");
    }
  }
  r.n = static_cast<int32_t>(integer(body, "n", 1, kMaxChoices).value_or(1));
  r.stream = boolean(body, "stream").value_or(false);
  r.cache_prompt = boolean(body, "cache_prompt").value_or(true);
  r.ignore_eos = boolean(body, "ignore_eos").value_or(false);

  const int64_t cap = limits.max_tokens < 0 ? std::numeric_limits<int32_t>::max() : limits.max_tokens;
  const char* max_name = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_tokens = static_cast<int32_t>(integer(body, max_name, 1, cap).value_or(limits.max_tokens));

  r.sampling = limits.sampling;
  if (auto t = number(body, "temperature", 0, 2)) r.sampling.temp = static_cast<float>(*t);
  if (auto p = number(body, "top_p", 0, 1)) r.sampling.top_p = static_cast<float>(*p);
  if (auto m = number(body, "min_p", 0, 1)) r.sampling.min_p = static_cast<float>(*m);
  if (auto k = integer(body, "top_k", 0, std::numeric_limits<int32_t>::max()))
    r.sampling.top_k = static_cast<int32_t>(*k);
  // OpenAI's penalties, and llama-server's repeat penalty and window (the window holds the prompt too).
  if (auto f = number(body, "frequency_penalty", -2, 2))
    r.sampling.frequency_penalty = static_cast<float>(*f);
  if (auto f = number(body, "presence_penalty", -2, 2)) r.sampling.presence_penalty = static_cast<float>(*f);
  if (auto f = number(body, "repeat_penalty", 0, 10)) {
    if (*f == 0) fail("repeat_penalty", "'repeat_penalty' must be above 0");
    r.sampling.repeat_penalty = static_cast<float>(*f);
  }
  if (auto n = integer(body, "repeat_last_n", -1, std::numeric_limits<int32_t>::max()))
    r.sampling.repeat_last_n = static_cast<int32_t>(*n);
  if (field(body, "logit_bias")) r.sampling.logit_bias = logit_bias(body, limits.n_vocab);
  if (auto seed = integer(body, "seed", -1, std::numeric_limits<uint32_t>::max()); seed && *seed >= 0) {
    r.sampling.seed = static_cast<uint32_t>(*seed);
    r.seed_given = true;
  }
  r.stop = stop_strings(body);
  if (!grammar && !constraint.gbnf.empty()) grammar = parsed_grammar(constraint.gbnf, "grammar");
  if (!grammar && constraint.schema) {
    Result<std::shared_ptr<const model::Grammar>> g = model::parse_json_schema(*constraint.schema);
    if (!g) fail(constraint.param, fmt::format("'{}': {}", constraint.param, g.error().reason));
    grammar = *g;
  }
  if (grammar) {
    if (!limits.grammar_vocab) fail("grammar", "this server takes no grammars");
    r.sampling.grammar = std::move(grammar);
    r.sampling.grammar_vocab = limits.grammar_vocab;
  }
  if (endpoint == Endpoint::chat) {
    const bool on = boolean(body, "logprobs").value_or(false);
    const auto top = integer(body, "top_logprobs", 0, model::kMaxLogprobs);
    if (top && !on) fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (on) r.n_logprobs = static_cast<int32_t>(top.value_or(0));
  } else if (auto n = integer(body, "logprobs", 0, model::kMaxLogprobs)) {
    r.n_logprobs = static_cast<int32_t>(*n);
  }
  return r;
}

// The prompt counts once (OpenAI's usage), the completion tokens of every choice.
json usage(std::span<const Completion> cs) {
  int64_t n_gen = 0;
  for (const Completion& c : cs) n_gen += c.n_gen;
  return {{"prompt_tokens", cs[0].n_prompt},
          {"completion_tokens", n_gen},
          {"total_tokens", cs[0].n_prompt + n_gen},
          {"prompt_tokens_details", {{"cached_tokens", cs[0].n_cached}}}};
}

json envelope(Endpoint endpoint, const ResponseHeader& h, bool chunk) {
  const char* object = endpoint == Endpoint::completion ? "text_completion"
                       : chunk                          ? "chat.completion.chunk"
                                                        : "chat.completion";
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

json bytes_of(std::string_view s) {
  json b = json::array();
  for (char ch : s) b.push_back(static_cast<unsigned char>(ch));
  return b;
}

// OpenAI's [{"id", "type": "function", "function": {"name", "arguments"}}], with "index" in a chunk.
json tool_calls_json(const std::vector<model::ToolCall>& calls, bool chunk) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json c = {{"id", calls[i].id},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (chunk) c["index"] = i;
    out.push_back(std::move(c));
  }
  return out;
}

json choice(Endpoint endpoint, int index, std::string_view text, bool chunk, bool first,
            const json& finish_reason, const json& logprobs = nullptr,
            const std::vector<model::ToolCall>* calls = nullptr) {
  json c = {{"index", index}, {"finish_reason", finish_reason}, {"logprobs", logprobs}};
  if (endpoint == Endpoint::completion) {
    c["text"] = text;
  } else if (!chunk) {
    const bool called = calls && !calls->empty();
    c["message"] = {{"role", "assistant"}, {"content", called && text.empty() ? json(nullptr) : json(text)}};
    if (called) c["message"]["tool_calls"] = tool_calls_json(*calls, false);
  } else {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty()) delta["content"] = text;
    c["delta"] = std::move(delta);
  }
  return c;
}

}  // namespace

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

ParseResult parse_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits) {
  return parsed<ParsedRequest>([&] { return parse(body, endpoint, limits); });
}

Parsed<TokenizeRequest> parse_tokenize(std::string_view body_text) {
  return parsed<TokenizeRequest>([&] {
    const json body = object_body(body_text);
    const json* content = field(body, "content");
    if (!content || !content->is_string()) fail("content", "'content' must be a string");
    return TokenizeRequest{content->get<std::string>(), boolean(body, "add_special").value_or(false),
                           boolean(body, "with_pieces").value_or(false)};
  });
}

json tokenize_body(const std::vector<int32_t>& ids, const std::vector<std::string_view>* pieces) {
  if (!pieces) return {{"tokens", ids}};
  json tokens = json::array();
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string_view piece = (*pieces)[i];
    const bool whole = tokenizer::utf8_valid_prefix(piece) == piece.size();
    tokens.push_back({{"id", ids[i]}, {"piece", whole ? json(piece) : bytes_of(piece)}});
  }
  return {{"tokens", std::move(tokens)}};
}

Parsed<std::vector<int32_t>> parse_detokenize(std::string_view body_text, int64_t n_vocab) {
  return parsed<std::vector<int32_t>>([&] {
    const json body = object_body(body_text);
    const json* tokens = field(body, "tokens");
    if (!tokens || !tokens->is_array()) fail("tokens", "'tokens' must be an array of token ids");
    return token_ids(*tokens, n_vocab, "tokens");
  });
}

json logprobs_object(Endpoint endpoint, const std::vector<TokenLogprobs>& tokens, int64_t offset) {
  if (endpoint == Endpoint::chat) {
    json content = json::array();
    for (const TokenLogprobs& t : tokens) {
      json top = json::array();
      for (const auto& [text, lp] : t.top)
        top.push_back({{"token", text}, {"logprob", lp}, {"bytes", bytes_of(text)}});
      content.push_back({{"token", t.token},
                         {"logprob", t.logprob},
                         {"bytes", bytes_of(t.token)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const TokenLogprobs& t : tokens) {
    toks.push_back(t.token);
    lps.push_back(t.logprob);
    json top = json::object();
    for (const auto& [text, lp] : t.top) top[text] = lp;
    tops.push_back(std::move(top));
    offsets.push_back(offset);
    offset += static_cast<int64_t>(t.token.size());
  }
  return {{"tokens", std::move(toks)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offsets)}};
}

json response_body(Endpoint endpoint, const ResponseHeader& h, std::span<const Completion> cs) {
  json j = envelope(endpoint, h, false);
  j["choices"] = json::array();
  for (size_t i = 0; i < cs.size(); ++i) {
    const Completion& c = cs[i];
    j["choices"].push_back(choice(endpoint, static_cast<int>(i), c.text, false, false, c.finish_reason,
                                  c.logprobs ? logprobs_object(endpoint, *c.logprobs, 0) : json(nullptr),
                                  &c.tool_calls));
  }
  j["usage"] = usage(cs);
  return j;
}

json stream_chunk(Endpoint endpoint, const ResponseHeader& h, std::string_view text, bool first,
                  const json& logprobs, int index) {
  json j = envelope(endpoint, h, true);
  j["choices"] = json::array({choice(endpoint, index, text, true, first, nullptr, logprobs)});
  return j;
}

json delta_chunk(const ResponseHeader& h, json delta, const json& logprobs, int index) {
  json j = envelope(Endpoint::chat, h, true);
  j["choices"] = json::array(
      {{{"index", index}, {"finish_reason", nullptr}, {"logprobs", logprobs}, {"delta", std::move(delta)}}});
  return j;
}

namespace {

std::string new_call_id() {
  static constexpr std::string_view kAlnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::random_device rd;
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[rd() % kAlnum.size()];
  return id;
}

// As llama-server: a reply the model ended (not cut short) that called a tool.
void set_finish_reason(Completion& c, bool cut) {
  if (!c.tool_calls.empty() && !cut && c.finish_reason == "stop") c.finish_reason = "tool_calls";
}

bool extends(std::string_view now, std::string_view sent) {
  return now.size() > sent.size() && now.substr(0, sent.size()) == sent;
}

// What the reply gives the client: as llama-server, a reading that found nothing (no call, no answer:
// a reply cut before either began) gives the text as it is.
model::ToolReply final_reading(const std::string& text, bool cut) {
  model::ToolReply r = model::parse_tool_reply(text, cut);
  if (r.content.empty() && r.calls.empty()) r.content = text;
  return r;
}

}  // namespace

void read_tool_reply(Completion& c, bool cut) {
  model::ToolReply reply = final_reading(c.text, cut);
  c.text = std::move(reply.content);
  c.tool_calls = std::move(reply.calls);
  for (model::ToolCall& call : c.tool_calls) call.id = new_call_id();
  set_finish_reason(c, cut);
}

std::vector<json> ToolReplyStream::deltas(const model::ToolReply& now) {
  std::vector<json> out;
  if (extends(now.content, content_)) {
    out.push_back({{"content", now.content.substr(content_.size())}});
    content_ = now.content;
  }
  for (size_t i = 0; i < now.calls.size(); ++i) {
    const model::ToolCall& c = now.calls[i];
    if (i < calls_.size()) {
      if (c.name != calls_[i].name || !extends(c.arguments, calls_[i].arguments)) continue;
      const json growth = {{"index", i},
                           {"function", {{"arguments", c.arguments.substr(calls_[i].arguments.size())}}}};
      out.push_back({{"tool_calls", json::array({growth})}});
      calls_[i].arguments = c.arguments;
    } else {
      calls_.push_back({new_call_id(), c.name, c.arguments});
      const json call = {{"index", i},
                         {"id", calls_[i].id},
                         {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", c.arguments}}}};
      out.push_back({{"tool_calls", json::array({call})}});
    }
  }
  return out;
}

std::vector<json> ToolReplyStream::add(std::string_view piece) {
  raw_ += piece;
  return deltas(model::parse_tool_reply(raw_, /*partial=*/true));
}

std::vector<json> ToolReplyStream::finish(Completion& c, bool cut) {
  std::vector<json> out = deltas(final_reading(raw_, cut));
  c.text = content_;
  c.tool_calls = calls_;
  set_finish_reason(c, cut);
  return out;
}

json stream_final_chunk(Endpoint endpoint, const ResponseHeader& h, const Completion& c, int index,
                        bool with_usage) {
  json j = envelope(endpoint, h, true);
  j["choices"] = json::array({choice(endpoint, index, "", true, false, c.finish_reason)});
  if (with_usage) j["usage"] = usage({&c, 1});  // llama-server's habit; OpenAI's with stream_options
  return j;
}

json stream_usage_chunk(Endpoint endpoint, const ResponseHeader& h, std::span<const Completion> cs) {
  json j = envelope(endpoint, h, true);
  j["choices"] = json::array();
  j["usage"] = usage(cs);
  return j;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

}  // namespace qe::cli::serve
