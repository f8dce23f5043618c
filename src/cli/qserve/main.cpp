// qserve: an OpenAI-compatible HTTP server for a llama-architecture GGUF model, llama-server's flags.
//   qserve -m model.gguf [--host 127.0.0.1] [--port 8080] [-np 4] [-c 4096] [-t N] [--api-key K]
// Endpoints: POST /v1/chat/completions (with tools), POST /v1/completions, GET /v1/models, GET /health,
// GET /metrics, and llama-server's POST /tokenize, /detokenize, /apply-template.
// Requests share one model::BatchEngine (continuous batching over -np slots); a request's tokens do
// not depend on the others in the batch. SIGINT / SIGTERM: refuse new requests, finish the accepted
// ones, exit 0; a second signal exits at once.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <exception>
#include <filesystem>
#include <new>
#include <thread>

#include "cli/flag_errors.h"
#include "cli/interrupt.h"
#include "cli/isa_choice.h"
#include "cli/llama_flags.h"
#include "cli/qserve/server.h"
#include "cli/sampling_flags.h"
#include "kernels/kernel_table.h"
#include "model/batch_engine.h"
#include "model/chat_session.h"
#include "model/model.h"

namespace qe::cli {
namespace {

struct ServeOptions {
  std::string model;          // -m
  int n_slots = 4;            // -np, --parallel
  int64_t n_ctx = 0;          // -c: positions per slot; 0 = the model's, at most 4096
  int64_t n_batch = model::kDefaultBatch;  // -b
  int64_t queue = 64;         // --queue
  int n_threads = 0;          // -t
  std::string chat_template;  // --chat-template
  std::string isa;            // --isa
  std::string numerics = "fast";  // --numerics
  serve::ServerOptions server;
  GrammarOptions grammar;  // --grammar, --grammar-file, -j, -jf: the default for requests
};

Status run_server(const ServeOptions& o) {
  if (Status st = choose_isa(o.isa); !st) return st;
  if (o.n_slots < 1 || o.n_slots > 256) return Error{"", "", fmt::format("-np {} must be 1..256", o.n_slots)};
  if (o.n_ctx < 0) return Error{"", "", fmt::format("-c {} must be >= 0", o.n_ctx)};
  if (o.queue < 1) return Error{"", "", fmt::format("--queue {} must be >= 1", o.queue)};
  if (o.n_threads < 0) return Error{"", "", fmt::format("-t {} must be >= 0", o.n_threads)};
  if (o.server.threads_http < 0)
    return Error{"", "", fmt::format("--threads-http {} must be >= 0", o.server.threads_http)};
  if (o.server.limits.max_tokens == 0 || o.server.limits.max_tokens < -1)
    return Error{"", "", fmt::format("-n {} must be > 0 (or -1 = unbounded)", o.server.limits.max_tokens)};
  const auto hints = {FlagHint{"chat_template", "--chat-template", ""},
                      FlagHint{"n_ctx", "-c", ""},
                      FlagHint{"n_slots", "-np", ""},
                      FlagHint{"n_batch", "-b", ""},
                      FlagHint{"max_queue", "--queue", ""},
                      FlagHint{"numerics", "--numerics", ""},
                      FlagHint{"n_threads", "-t", ""}};

  model::ModelOptions mo;
  mo.n_threads = o.n_threads;
  mo.numerics = o.numerics == "llama.cpp" ? model::Numerics::llamacpp : model::Numerics::fast;
  Result<std::unique_ptr<model::Model>> m = model::open_model(o.model, mo);
  if (!m) return with_flags(m.error(), hints);
  if (Status st = check_logit_bias(o.server.limits.sampling, (*m)->config.n_vocab, o.model); !st) return st;
  Result<model::ResolvedTemplate> tmpl = model::resolve_model_template(**m, o.chat_template);
  if (!tmpl) return with_flags(tmpl.error(), hints);
  Result<std::unique_ptr<model::BatchEngine>> engine = model::BatchEngine::create(
      **m, {.n_slots = o.n_slots, .n_ctx = o.n_ctx, .n_batch = o.n_batch, .max_queue = o.queue});
  if (!engine) return with_flags(engine.error(), hints);

  serve::ServerOptions so = o.server;
  so.limits.n_vocab = (*m)->config.n_vocab;
  // The flags' grammar is every request's default (llama-server's --grammar / -j); a request's own
  // grammar or schema replaces it. The vocabulary as a grammar reads it: built once, for every request.
  if (Status st = load_grammar(o.grammar, (*m)->tok, so.limits.sampling); !st) return st;
  so.limits.grammar_vocab = so.limits.sampling.grammar_vocab
                                ? so.limits.sampling.grammar_vocab
                                : std::make_shared<const model::GrammarVocab>((*m)->tok);
  // How the template writes a tool call, found once (minja finds it with the template's end-of-turn
  // text: the vocabulary's EOS token).
  const int32_t eos = (*m)->tok.eos();
  so.limits.tool_call_example =
      model::tool_call_example(tmpl->tmpl, eos >= 0 ? (*m)->tok.token_to_piece(eos) : std::string_view());
  if (so.model_name.empty()) so.model_name = std::filesystem::path(o.model).filename().string();
  serve::Server server(**m, **engine, tmpl->tmpl, so);
  if (Status st = server.bind(); !st) return st;
  fmt::print(stderr, "qserve: {}; {} threads; {} slots x {} positions; chat template {}\n",
             kernels::describe_isa(), (*m)->n_threads(), o.n_slots, (*engine)->params().n_ctx,
             tokenizer::chat_template_name(tmpl->tmpl));
  fmt::print(stderr, "qserve: listening on http://{}:{}\n", so.host, so.port);

  std::thread http([&] { server.listen(); });
  while (!interrupted()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  fmt::print(stderr, "qserve: draining: no new requests; finishing the accepted ones\n");
  server.begin_drain();
  (*engine)->drain();
  server.wait_streams();
  server.stop();
  http.join();
  const model::BatchEngineStats st = (*engine)->stats();
  fmt::print(stderr, "qserve: stopped after {} requests ({} prompt tokens, {} generated)\n", st.requests_done,
             st.tokens_prompt, st.tokens_generated);
  return {};
}

}  // namespace
}  // namespace qe::cli

int main(int argc, char** argv) {
  qe::cli::ServeOptions o;
  qe::cli::serve::ServerOptions& s = o.server;
  CLI::App app{"qserve: an OpenAI-compatible HTTP server for a llama-architecture GGUF model"};
  app.set_version_flag("--version", "qserve 0.1.0");
  app.add_option("-m,--model", o.model, "model path (GGUF)")->required();
  app.add_option("--host", s.host, "address to listen on (loopback by default)");
  app.add_option("--port", s.port, "port to listen on")->check(CLI::Range(1, 65535));
  app.add_option("--parallel", o.n_slots, "slots: requests decoded together");
  app.add_option("-c,--ctx-size", o.n_ctx, "positions per slot (0 = the model's, at most 4096)");
  app.add_option("-b,--batch-size", o.n_batch, "most tokens per engine step")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", o.n_threads, "number of threads (0 = physical cores)");
  app.add_option("--api-key", s.api_key, "require Authorization: Bearer KEY on every endpoint but /health");
  app.add_option("--chat-template", o.chat_template,
                 "chat template by llama.cpp's name (\"\" = the model's, chatml without one): " +
                     qe::tokenizer::chat_template_name_list());
  app.add_option("-n,--n-predict", s.limits.max_tokens,
                 "most tokens a request may generate, and its default (-1 = until end or a full slot)");
  app.add_option("--queue", o.queue, "requests that may wait for a slot; more get 503 with Retry-After");
  app.add_option("--max-body", s.max_body, "largest request body in bytes; larger gets 413");
  app.add_option("--timeout", s.timeout_s, "read and write timeout of a connection, seconds")
      ->check(CLI::Range(1, 86400));
  app.add_option("--threads-http", s.threads_http, "HTTP worker threads (0 = slots + queue + 32)");
  app.add_option("-a,--alias", s.model_name,
                 "model name in /v1/models and responses (default: the file name)");
  bool cont_batching = true;
  app.add_flag("--cont-batching", cont_batching,
               "continuous batching (always on; accepted for llama-server's habit)");
  app.add_option("--isa", o.isa, "kernel level: ref, avx2, avx512, neon (\"\" = best the CPU has)");
  app.add_option("--numerics", o.numerics,
                 "fast (this engine's kernels) or llama.cpp (the tokens llama-server's AVX2 CPU backend "
                 "gives, bit for bit: one slot, -b 512 unless given, q4_1/q8_0/f16 models)")
      ->check(CLI::IsMember({"fast", "llama.cpp"}));
  qe::cli::add_sampling_options(app, s.limits.sampling,
                                "Sampling defaults (a request's fields override them)");
  qe::cli::add_grammar_options(app, o.grammar, "Sampling defaults (a request's fields override them)");

  // llama-server's one-dash long names, and llama.cpp's GPU flags (accepted, with a note).
  const qe::cli::LlamaFlags llama{{{"-np", "--parallel"},
                                   {"-to", "--timeout"},
                                   {"-cb", "--cont-batching"},
                                   {"-jf", "--json-schema-file"}},
                                  qe::cli::gpu_flags()};
  if (int rc = qe::cli::parse_llama_style(app, "qserve", argc, argv, llama); rc >= 0) return rc;
  // llama.cpp's own batch (n_ubatch) where its numbers are the point, as qrun.
  if (o.numerics == "llama.cpp" && app.count("--batch-size") == 0) o.n_batch = 512;

  qe::cli::install_interrupt_handlers();
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not a dead server
  try {
    qe::Status st = qe::cli::run_server(o);
    if (!st) {
      fmt::print(stderr, "qserve: {}\n", st.error().message());
      return 1;
    }
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "qserve: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "qserve: {}\n", e.what());
    return 1;
  }
  return 0;
}
