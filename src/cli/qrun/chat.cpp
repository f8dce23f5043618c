// qrun -cnv: llama-cli's conversation mode over model::ChatSession. User turns come from stdin a line
// at a time (EOF ends the chat); the session evaluates only the text each new turn adds, its KV cache
// keeping the whole conversation.
//
// Streams: stdout carries only the assistant's replies, each ended by a newline, so a transcript of the
// model's side can be piped; the "> " prompt (and, when stdin is not a terminal, the line read) goes to
// stderr with the logs, like llama-cli's prompt marker.
#include <fmt/core.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include "cli/interrupt.h"
#include "cli/qrun/common.h"
#include "model/chat_session.h"
#include "model/generate.h"
#include "tokenizer/chat_template.h"

namespace qe::cli {
namespace {

// stdin a line at a time, read with read(2) into a buffer of our own, so that waiting for the user can
// notice Ctrl-C (poll wakes on it; std::getline would sit in a restarted read) and no line hides in a
// stdio buffer that poll cannot see.
class StdinLines {
 public:
  // The next line without its end of line; nullopt at EOF or on Ctrl-C.
  std::optional<std::string> next() {
    for (;;) {
      if (const size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (eof_) {
        if (buf_.empty()) return std::nullopt;
        return std::exchange(buf_, {});
      }
      pollfd p{STDIN_FILENO, POLLIN, 0};
      if (interrupted()) return std::nullopt;
      const int ready = poll(&p, 1, 100);  // the timeout covers a signal that lands just before poll
      if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
      char chunk[4096];
      const ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  std::string buf_;
  bool eof_ = false;
};

// The next user turn: -p's text first (llama-cli takes it as the first message), then stdin lines.
// Empty lines are skipped, as llama-cli waits for text. nullopt at EOF or on Ctrl-C.
std::optional<std::string> next_user_turn(const RunOptions& o, StdinLines& in, bool first, bool echo) {
  if (first && !o.prompt.empty()) {
    fmt::print(stderr, "> {}\n", o.prompt);
    return o.prompt;
  }
  while (true) {
    fmt::print(stderr, "> ");
    std::fflush(stderr);
    std::optional<std::string> line = in.next();
    if (!line) {
      fmt::print(stderr, "\n");
      return std::nullopt;
    }
    if (!line->empty() && line->back() == '\r') line->pop_back();
    if (echo) fmt::print(stderr, "{}\n", *line);
    if (!line->empty()) return o.escape ? process_escapes(*line) : *line;
  }
}

const char* source_name(model::TemplateSource s) {
  switch (s) {
    case model::TemplateSource::named:
      return "--chat-template";
    case model::TemplateSource::model:
      return "from the model";
    case model::TemplateSource::default_chatml:
      return "default: the model has none";
  }
  return "?";
}

}  // namespace

Status run_chat(const RunOptions& o, const model::Model& m, double load_ms) {
  if (!o.prompt_file.empty())
    return usage("-f is not used in chat mode: give the first message with -p or stdin");

  model::SamplerParams sp = o.sampling;
  sp.seed = resolve_seed(o);
  Result<model::ChatSession> chat =
      model::ChatSession::create(m, {o.n_ctx, o.n_batch, false}, {o.chat_template, o.system_prompt, sp});
  if (!chat) return to_flags(chat.error());
  const model::Context& ctx = chat->context();

  log_model(o, m);
  fmt::print(
      stderr, "qrun: chat template {} ({}), n_ctx = {}, n_batch = {}, kv cache {} ({:.1f} MiB), seed = {}\n",
      tokenizer::chat_template_name(chat->chat_template()), source_name(chat->template_source()), ctx.n_ctx(),
      ctx.n_batch(), o.cache_type, static_cast<double>(ctx.kv_cache().bytes()) / 1048576.0, sp.seed);
  fmt::print(stderr, "qrun: chat mode: one message per line on stdin; EOF (Ctrl-D) ends; Ctrl-C stops a reply, "
             "and at the prompt ends\n");

  const bool echo = isatty(STDIN_FILENO) == 0;
  StdinLines in;
  int64_t turn = 0, n_gen_total = 0;
  while (std::optional<std::string> user = next_user_turn(o, in, turn == 0, echo)) {
    ++turn;
    const int64_t pos = ctx.n_past();
    Result<std::span<const int32_t>> ids = chat->add_user(std::move(*user));
    if (!ids) return to_flags(ids.error());
    if (o.verbose) {
      fmt::print(stderr, "qrun: turn {}: {} new tokens at position {}:", turn, ids->size(), pos);
      for (int32_t id : *ids) fmt::print(stderr, " {}", id);
      fmt::print(stderr, "\n");
    }

    // The reply: until an end-of-generation token, -n tokens or a full context.
    int64_t n_streamed = 0;
    auto on_chunk = [&](const model::StreamChunk& c) {
      if (!c.stop) {
        ++n_streamed;
      } else if (n_streamed > 0 && ctx.n_past() >= ctx.n_ctx() &&
                 (c.stop == model::StopReason::context_full || c.stop == model::StopReason::n_predict)) {
        fmt::print(stderr, "\nqrun: context full ({} tokens)\n", ctx.n_ctx());
      }
      emit(c.text);
      return !interrupted();
    };
    Result<model::GenerateStats> r = chat->generate_reply({o.n_predict, false}, on_chunk);
    if (!r) return to_flags(r.error());
    emit("\n");
    if (r->stop == model::StopReason::callback) {  // Ctrl-C: the reply ends, the chat goes on
      fmt::print(stderr, "[interrupted]\n");
      clear_interrupt();
    }
    n_gen_total += r->n_gen;
    if (o.verbose)
      fmt::print(stderr, "qrun: turn {}: {} tokens generated, cache at {} of {}\n", turn, r->n_gen,
                 ctx.n_past(), ctx.n_ctx());
    if (o.single_turn) break;
  }

  const model::ContextTimings& t = ctx.timings();
  fmt::print(stderr, "\nqrun: {:>16} = {:10.2f} ms\n", "load time", load_ms);
  print_timing("prompt eval time", t.prompt_ms, t.n_prompt, "tokens");
  print_timing("eval time", t.eval_ms, t.n_eval, "runs  ");
  fmt::print(stderr, "qrun: {:>16} = {:5} turn{}, {} tokens generated\n", "conversation", turn,
             turn == 1 ? "" : "s", n_gen_total);
  return {};
}

}  // namespace qe::cli
