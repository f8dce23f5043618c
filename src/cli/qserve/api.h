// The OpenAI API's request and response bodies, as qserve speaks them: pure functions of their
// arguments (no sockets, no engine), so a request's validation is the same whatever the transport.
//
// Requests are hostile input: a field of the wrong type, a value out of range or a body that is not
// well-formed JSON in UTF-8 is an ApiError (HTTP 400 with OpenAI's error object), never an exception
// that escapes. Fields this server does not know are ignored, as OpenAI does; fields of OpenAI's that
// ask for what it does not do (best_of > 1, echo, suffix, the legacy "functions") are errors.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/chat_tools.h"
#include "model/sampler.h"
#include "tokenizer/chat_template.h"

namespace qe::cli::serve {

// OpenAI's error object: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // the request field at fault ("" = null)
  std::string code;   // "" = null
  std::string type = "invalid_request_error";
};
nlohmann::json error_body(const ApiError& e);

enum class Endpoint { chat, completion };

// What a request may ask for, fixed by the server's flags.
struct RequestLimits {
  int32_t max_tokens = -1;        // -n: the most a request may generate and the default (-1: unbounded)
  model::SamplerParams sampling;  // defaults for the fields a request leaves out (llama-server's)
  int64_t n_vocab = 0;            // the model's: a request's token ids (logit_bias, a prompt) are below it
  // The vocabulary as a grammar reads it: a request's "grammar" / JSON schema runs on it (null: none built,
  // which a front end does at start; model/grammar.h).
  std::shared_ptr<const model::GrammarVocab> grammar_vocab;
  // How the chat template writes a tool call (model::tool_call_example), shown to the model with the
  // tools of a request that has them.
  std::string tool_call_example;
};

// OpenAI's "n": choices a request may ask for (each one decodes in a slot of its own).
inline constexpr int64_t kMaxChoices = 16;

struct ParsedRequest {
  Endpoint endpoint = Endpoint::chat;
  int32_t n = 1;  // choices: the same prompt sampled n times (seed + i for choice i when a seed is given)
  std::vector<tokenizer::ChatMessage> messages;  // chat, tools and tool turns written out (chat_tools.h)
  bool tool_reply = false;  // the reply is a tool call or an answer in JSON: read with read_tool_reply
  std::string prompt;                            // completion: text, or
  std::vector<int32_t> prompt_ids;               // its token ids, as given (no BOS added)
  int32_t max_tokens = -1;
  model::SamplerParams sampling;
  bool seed_given = false;  // else the server draws one
  std::vector<std::string> stop;
  bool stream = false;
  bool cache_prompt = true;  // llama-server's field: reuse a prefix a slot's cache holds (same tokens)
  bool ignore_eos = false;   // llama-server's field: the end-of-generation tokens are never sampled
  // -1: no log-probabilities; else each token's and this many alternatives (chat: "logprobs": true and
  // "top_logprobs"; completions: "logprobs": N).
  int32_t n_logprobs = -1;
};

template <class Request>
struct Parsed {
  std::optional<Request> request;
  ApiError error;  // when !request
};
using ParseResult = Parsed<ParsedRequest>;
ParseResult parse_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits);

// llama-server's POST /tokenize: {"content": "...", "add_special": false, "with_pieces": false}. Special
// tokens written in the content become their ids (as a prompt's do); add_special adds the BOS / EOS the
// vocabulary asks for.
struct TokenizeRequest {
  std::string content;
  bool add_special = false;
  bool with_pieces = false;
};
Parsed<TokenizeRequest> parse_tokenize(std::string_view body);
// {"tokens": [ids]}; with pieces {"tokens": [{"id", "piece"}]}, a piece as a string when it is whole
// UTF-8, else as its bytes (llama-server's shapes).
nlohmann::json tokenize_body(const std::vector<int32_t>& ids, const std::vector<std::string_view>* pieces);

// llama-server's POST /detokenize: {"tokens": [ids]}, every id in the vocabulary of n_vocab tokens.
Parsed<std::vector<int32_t>> parse_detokenize(std::string_view body, int64_t n_vocab);

// A generated token's log-probability under the model and its most likely alternatives, as text.
struct TokenLogprobs {
  std::string token;  // the token's bytes (may be part of a UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};
// The "logprobs" object of a choice for these tokens: chat {"content": [{token, logprob, bytes,
// top_logprobs}]}, completions {tokens, token_logprobs, top_logprobs, text_offset} with offsets counted
// in bytes from `offset` (the tokens' place in the completion's text).
nlohmann::json logprobs_object(Endpoint endpoint, const std::vector<TokenLogprobs>& tokens, int64_t offset);

// The finished request, in OpenAI's words.
struct Completion {
  std::string text;
  std::string finish_reason;  // "stop", "length" or "tool_calls"
  int64_t n_prompt = 0, n_gen = 0;
  int64_t n_cached = 0;  // of the prompt tokens, those a slot's cache held (usage.prompt_tokens_details)
  std::optional<std::vector<TokenLogprobs>> logprobs;  // when asked: every generated token's
  std::vector<model::ToolCall> tool_calls;             // chat with tools: the calls the reply made
};

// A tool reply (ParsedRequest::tool_reply) read back: the calls, each with a new id ("call_" and 24
// letters or digits), and the answer as the text; finish_reason "tool_calls" when a call ended the reply.
// `cut`: the reply did not end with an end of generation (model::parse_tool_reply's partial).
void read_tool_reply(Completion& c, bool cut);

// A tool reply as it streams, read again at each piece as llama-server does (the reply so far is cut):
// what it adds to the answer or to the calls becomes chunk deltas, {"content": text} or {"tool_calls":
// [{"index", "id", "type", "function": {"name", "arguments"}}]} (a call's id, type and name once, its
// arguments as they grow). Nothing is taken back: a reading that does not extend what was sent adds
// nothing.
class ToolReplyStream {
 public:
  std::vector<nlohmann::json> add(std::string_view piece);
  // At the end (`cut` as read_tool_reply's): the last deltas; c gets the calls and the finish reason.
  std::vector<nlohmann::json> finish(Completion& c, bool cut);

 private:
  std::vector<nlohmann::json> deltas(const model::ToolReply& now);

  std::string raw_;
  std::string content_;                 // the answer sent
  std::vector<model::ToolCall> calls_;  // the calls sent, with their ids
};

// Fields every response object of one request repeats.
struct ResponseHeader {
  std::string id;  // "chatcmpl-N" / "cmpl-N"
  int64_t created = 0;
  std::string model;
};

// The whole response of a request that did not stream: its choices, in order, and the usage counts (the
// prompt once, the completion tokens of every choice).
nlohmann::json response_body(Endpoint endpoint, const ResponseHeader& h, std::span<const Completion> choices);
// One streamed chunk of choice `index`: text (chat: the delta; the first chunk of a chat's choice also
// carries the role), or a choice's last one with its finish_reason (and, with_usage, the usage counts:
// llama-server's habit for one choice; several end with stream_usage_chunk).
nlohmann::json stream_chunk(Endpoint endpoint, const ResponseHeader& h, std::string_view text, bool first,
                            const nlohmann::json& logprobs = nullptr, int index = 0);
// A chat chunk with this delta (ToolReplyStream's).
nlohmann::json delta_chunk(const ResponseHeader& h, nlohmann::json delta,
                           const nlohmann::json& logprobs = nullptr, int index = 0);
nlohmann::json stream_final_chunk(Endpoint endpoint, const ResponseHeader& h, const Completion& c, int index,
                                  bool with_usage);
// {"choices": [], "usage": ...}: the usage of every choice, after the last one ended (OpenAI's shape).
nlohmann::json stream_usage_chunk(Endpoint endpoint, const ResponseHeader& h,
                                  std::span<const Completion> choices);
// A server-sent event: "data: JSON\n\n" (invalid UTF-8 in a string is written as U+FFFD).
std::string sse_event(const nlohmann::json& j);
std::string dump(const nlohmann::json& j);

}  // namespace qe::cli::serve
