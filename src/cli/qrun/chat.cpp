// qrun -cnv: llama-cli's conversation mode. User turns come from stdin a line at a time (EOF ends the
// chat); each is formatted with the model's chat template and only the text the new turn adds is
// evaluated: the KV cache keeps the whole conversation, as llama.cpp's common_chat_format_single does.
//
// Streams: stdout carries only the assistant's replies, each ended by a newline, so a transcript of the
// model's side can be piped; the "> " prompt (and, when stdin is not a terminal, the line read) goes to
// stderr with the logs, like llama-cli's prompt marker.
#include <fmt/core.h>
#include <unistd.h>

#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "cli/qrun/session.h"
#include "tokenizer/chat_template.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/run_state.h"
#include "model/sampler.h"

namespace qe::cli {
namespace {

struct Chat {
  const Session& s;
  model::KvCache kv;
  model::RunState state;
  int64_t n_ctx = 0, n_past = 0;
  double prompt_ms = 0, eval_ms = 0;
  int64_t n_prompt_tokens = 0, n_eval = 0;

  // Evaluates tokens at n_past.. in batches of n_batch; returns the last position's logits.
  Result<std::span<const float>> eval(std::span<const int32_t> tokens) {
    if (n_past + static_cast<int64_t>(tokens.size()) > n_ctx)
      return Error{"", "",
                   fmt::format("the conversation needs {} tokens, more than the context of {} (raise -c)",
                               n_past + static_cast<int64_t>(tokens.size()), n_ctx)};
    std::span<const float> logits;
    const Clock::time_point t0 = Clock::now();
    for (size_t p = 0; p < tokens.size(); p += static_cast<size_t>(state.n_batch)) {
      const size_t n = std::min(tokens.size() - p, static_cast<size_t>(state.n_batch));
      Result<std::span<const float>> r =
          model::forward(s.config, s.weights, state, kv, tokens.subspan(p, n), n_past);
      if (!r) return r.error();
      n_past += static_cast<int64_t>(n);
      logits = r->last(static_cast<size_t>(s.config.n_vocab));
    }
    (tokens.size() == 1 ? eval_ms : prompt_ms) += ms_since(t0);
    (tokens.size() == 1 ? n_eval : n_prompt_tokens) += static_cast<int64_t>(tokens.size());
    return logits;
  }
};

// The next user turn: -p's text first (llama-cli takes it as the first message), then stdin lines.
// Empty lines are skipped, as llama-cli waits for text. nullopt at EOF.
std::optional<std::string> next_user_turn(const RunOptions& o, bool first, bool echo) {
  if (first && !o.prompt.empty()) {
    fmt::print(stderr, "> {}\n", o.prompt);
    return o.prompt;
  }
  std::string line;
  while (true) {
    fmt::print(stderr, "> ");
    std::fflush(stderr);
    if (!std::getline(std::cin, line)) {
      fmt::print(stderr, "\n");
      return std::nullopt;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (echo) fmt::print(stderr, "{}\n", line);
    if (!line.empty()) return line;
  }
}

}  // namespace

Status run_chat(const RunOptions& o, Session& s) {
  const model::Config& c = s.config;
  const tokenizer::Tokenizer& tok = s.tok;
  if (!o.prompt_file.empty())
    return usage("-f is not used in chat mode: give the first message with -p or stdin");

  std::optional<std::string_view> gguf_template;
  Result<std::string> jinja = s.file.get_string("tokenizer.chat_template");
  if (jinja) gguf_template = *jinja;
  Result<tokenizer::ChatTemplate> tmpl = tokenizer::resolve_chat_template(o.chat_template, gguf_template);
  if (!tmpl) return Error{o.chat_template.empty() ? o.model : "", tmpl.error().field, tmpl.error().reason};

  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  const int64_t n_batch = std::min(o.n_batch, n_ctx);
  Result<model::KvCache> kv =
      model::KvCache::create(c, n_ctx, o.cache_type == "f32" ? GgmlType::F32 : GgmlType::F16);
  if (!kv) return kv.error();
  Result<model::RunState> state =
      model::RunState::create(c, s.weights.rope_freqs, n_batch, n_ctx, s.n_threads, false);
  if (!state) return state.error();
  state->numerics = numerics(o);
  Chat chat{s, std::move(*kv), std::move(*state), n_ctx};

  model::SamplerParams sp = o.sampling;
  sp.seed = o.seed >= 0 ? static_cast<uint32_t>(o.seed) : std::random_device{}();
  model::Sampler sampler(sp);

  log_session(o, s);
  fmt::print(stderr,
             "qrun: chat template {} ({}), n_ctx = {}, n_batch = {}, kv cache {} ({:.1f} MiB), seed = {}\n",
             tokenizer::chat_template_name(*tmpl),
             !o.chat_template.empty() ? "--chat-template"
             : gguf_template          ? "from the model"
                                      : "default: the model has none",
             n_ctx, n_batch, o.cache_type, static_cast<double>(chat.kv.bytes()) / 1048576.0, sp.seed);
  fmt::print(stderr, "qrun: chat mode: one message per line on stdin, EOF (Ctrl-D) ends\n");

  std::vector<tokenizer::ChatMessage> messages;
  if (!o.system_prompt.empty()) messages.push_back({"system", o.system_prompt});
  const bool echo = isatty(STDIN_FILENO) == 0;
  std::string pending;  // text the history holds but the cache does not yet: the reply's end marker
  std::vector<int32_t> pending_ids;  // the last reply's final token when -n stopped it before evaluation
  int64_t turn = 0, n_gen_total = 0;

  while (std::optional<std::string> user = next_user_turn(o, turn == 0, echo)) {
    ++turn;
    // The new turn's text: what format_chat adds to the history already in the cache (llama.cpp's
    // common_chat_format_single), after the end marker of the previous reply.
    const std::string before = turn == 1 ? std::string() : tokenizer::format_chat(*tmpl, messages, false);
    messages.push_back({"user", std::move(*user)});
    const std::string prompt = tokenizer::format_chat(*tmpl, messages, /*add_assistant_prompt=*/true);
    size_t common = 0;
    while (common < before.size() && common < prompt.size() && before[common] == prompt[common]) ++common;
    const std::string text = pending + prompt.substr(common);
    // BOS (when the vocabulary adds it) opens the conversation only; template markers are special tokens.
    std::vector<int32_t> ids = std::move(pending_ids);
    const std::vector<int32_t> more = tok.tokenize(text, /*add_special=*/turn == 1, /*parse_special=*/true);
    ids.insert(ids.end(), more.begin(), more.end());
    pending.clear();
    pending_ids.clear();
    if (o.verbose) {
      fmt::print(stderr, "qrun: turn {}: {} new tokens at position {}:", turn, ids.size(), chat.n_past);
      for (int32_t id : ids) fmt::print(stderr, " {}", id);
      fmt::print(stderr, "\n");
    }
    for (int32_t id : ids) sampler.accept(id);
    Result<std::span<const float>> logits = chat.eval(ids);
    if (!logits) return logits.error();

    // ---- The reply: sample until an end-of-generation token, -n tokens or a full context.
    std::string reply;
    tokenizer::Utf8Stream out;
    int64_t n_gen = 0;
    while (o.n_predict < 0 || n_gen < o.n_predict) {
      const int32_t id = sampler.sample(*logits);
      sampler.accept(id);
      if (tok.is_eog(id))
        break;  // the template's tail (which starts with this marker) is evaluated next turn
      const std::string_view piece = tok.token_to_piece(id, /*special=*/false);
      reply += piece;
      emit(out.push(piece));
      ++n_gen;
      if ((o.n_predict >= 0 && n_gen >= o.n_predict) || chat.n_past >= n_ctx) {
        pending_ids.push_back(id);  // in the history, not yet in the cache
        if (chat.n_past >= n_ctx) fmt::print(stderr, "\nqrun: context full ({} tokens)\n", n_ctx);
        break;
      }
      logits = chat.eval(std::span<const int32_t>(&id, 1));
      if (!logits) return logits.error();
    }
    emit(out.finish());
    emit("\n");
    n_gen_total += n_gen;
    pending = tokenizer::assistant_turn_tail(*tmpl, messages, reply);
    messages.push_back({"assistant", std::move(reply)});
    if (o.verbose)
      fmt::print(stderr, "qrun: turn {}: {} tokens generated, cache at {} of {}\n", turn, n_gen, chat.n_past,
                 n_ctx);
  }

  fmt::print(stderr, "\nqrun: {:>16} = {:10.2f} ms\n", "load time", s.load_ms);
  print_timing("prompt eval time", chat.prompt_ms, chat.n_prompt_tokens, "tokens");
  print_timing("eval time", chat.eval_ms, chat.n_eval, "runs  ");
  fmt::print(stderr, "qrun: {:>16} = {:5} turns, {} tokens generated\n", "conversation", turn, n_gen_total);
  return {};
}

}  // namespace qe::cli
