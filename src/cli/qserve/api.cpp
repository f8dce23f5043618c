#include "cli/qserve/api.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <limits>

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

std::vector<tokenizer::ChatMessage> messages(const json& body) {
  const json* m = field(body, "messages");
  if (!m) fail("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) fail("messages", "'messages' must be a non-empty array");
  std::vector<tokenizer::ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const std::string param = fmt::format("messages[{}]", i);
    const json& msg = (*m)[i];
    if (!msg.is_object()) fail(param, "each message must be an object");
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) fail(param + ".role", "each message needs a 'role' string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system message
    if (r != "system" && r != "user" && r != "assistant")
      fail(param + ".role", fmt::format("role '{}' is not supported (system, user, assistant)", r));
    const json* content = field(msg, "content");
    out.push_back({std::move(r), content ? text_content(*content, param + ".content") : std::string()});
  }
  return out;
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
  const json* choice = field(body, "tool_choice");
  for (const char* name : {"tools", "functions"}) {
    const json* f = field(body, name);
    if (f && !(f->is_array() && f->empty()) && !(choice && *choice == "none"))
      fail(name, fmt::format("'{}' (tool and function calls) are not supported", name));
  }
  if (endpoint != Endpoint::completion) return;
  if (boolean(body, "echo").value_or(false)) fail("echo", "'echo' is not supported");
  if (auto n = integer(body, "best_of", 0, std::numeric_limits<int32_t>::max()); n && *n > 1)
    fail("best_of", "only best_of = 1 is supported");
  if (const json* f = field(body, "suffix");
      f && !(f->is_string() && f->get_ref<const std::string&>().empty()))
    fail("suffix", "'suffix' (insertion) is not supported");
}

// The request's constraint on its output, as llama-server reads it: "grammar" (GBNF), "json_schema", or
// OpenAI's response_format ({"type": "json_object"} any JSON object, or a "schema" there;
// {"type": "json_schema", "json_schema": {"schema": ...}}). A schema is read again from the body in its
// own key order (properties are written in that order). Null when the request asks for none.
std::shared_ptr<const model::Grammar> output_grammar(const json& body, std::string_view body_text) {
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
  if (has_grammar) {
    Result<std::shared_ptr<const model::Grammar>> g =
        model::Grammar::parse(grammar->get_ref<const std::string&>());
    if (!g) fail("grammar", fmt::format("'grammar': {}: {}", g.error().field, g.error().reason));
    return *g;
  }
  if (path.empty()) return nullptr;
  // The body parsed a first time, so it parses again; a schema left out (json_object) is {}.
  const auto ordered = nlohmann::ordered_json::parse(body_text);
  const nlohmann::ordered_json* schema = &ordered;
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
  Result<std::shared_ptr<const model::Grammar>> g = model::parse_json_schema(*schema);
  if (!g) fail(param, fmt::format("'{}': {}", param, g.error().reason));
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
  ParsedRequest r;
  r.endpoint = endpoint;
  if (endpoint == Endpoint::chat) {
    r.messages = messages(body);
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
  if (const json* n = field(body, "n"); n && *n != 1) fail("n", "only n = 1 is supported");
  refuse_unsupported(body, endpoint);
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
  if (std::shared_ptr<const model::Grammar> g = output_grammar(body, body_text)) {
    if (!limits.grammar_vocab) fail("grammar", "this server takes no grammars");
    r.sampling.grammar = std::move(g);
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

json usage(const Completion& c) {
  return {{"prompt_tokens", c.n_prompt},
          {"completion_tokens", c.n_gen},
          {"total_tokens", c.n_prompt + c.n_gen},
          {"prompt_tokens_details", {{"cached_tokens", c.n_cached}}}};
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

json choice(Endpoint endpoint, std::string_view text, bool chunk, bool first, const json& finish_reason,
            const json& logprobs = nullptr) {
  json c = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", logprobs}};
  if (endpoint == Endpoint::completion) {
    c["text"] = text;
  } else if (!chunk) {
    c["message"] = {{"role", "assistant"}, {"content", text}};
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

json response_body(Endpoint endpoint, const ResponseHeader& h, const Completion& c) {
  json j = envelope(endpoint, h, false);
  j["choices"] =
      json::array({choice(endpoint, c.text, false, false, c.finish_reason,
                          c.logprobs ? logprobs_object(endpoint, *c.logprobs, 0) : json(nullptr))});
  j["usage"] = usage(c);
  return j;
}

json stream_chunk(Endpoint endpoint, const ResponseHeader& h, std::string_view text, bool first,
                  const json& logprobs) {
  json j = envelope(endpoint, h, true);
  j["choices"] = json::array({choice(endpoint, text, true, first, nullptr, logprobs)});
  return j;
}

json stream_final_chunk(Endpoint endpoint, const ResponseHeader& h, const Completion& c) {
  json j = envelope(endpoint, h, true);
  j["choices"] = json::array({choice(endpoint, "", true, false, c.finish_reason)});
  j["usage"] = usage(c);  // llama-server's habit; OpenAI sends it when stream_options.include_usage
  return j;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

}  // namespace qe::cli::serve
