// qrun: run a llama-architecture GGUF model with llama.cpp's flags (llama-cli, llama-perplexity).
//   qrun -m model.gguf -p "The capital of France is" -n 32 --temp 0      completion
//   qrun -m model.gguf -cnv [-sys "Be brief."] [--chat-template NAME]      chat on stdin/stdout
//   qrun -m model.gguf --perplexity -f text.txt [-c 512] [--chunks N]     perplexity
//   qrun -m q.gguf --kl-divergence --kl-divergence-base base.bin          KL divergence vs a saved run
// stdout carries only results (the prompt and the generated text, the replies, the scores); logs,
// timings and the stop reason ("[end of text]") go to stderr. Ctrl-C stops at the next token (chat: ends
// the reply), prints the timings and exits 0; a second Ctrl-C exits at once.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <exception>
#include <new>

#include "cli/interrupt.h"
#include "cli/llama_flags.h"
#include "cli/qrun/options.h"
#include "cli/sampling_flags.h"
#include "tokenizer/chat_template.h"

int main(int argc, char** argv) {
  qe::cli::RunOptions o;
  CLI::App app{"qrun: text generation, chat and perplexity with a llama-architecture GGUF model"};
  app.set_version_flag("--version", "qrun 0.1.0");
  app.add_option("-m,--model", o.model, "model path (GGUF)")->required();
  app.add_option("-p,--prompt", o.prompt, "prompt to start generation with");
  app.add_option("-f,--file", o.prompt_file, "a file containing the prompt");
  app.add_option("-n,--n-predict", o.n_predict, "number of tokens to predict (-1 = until end of generation)");
  app.add_option("-c,--ctx-size", o.n_ctx,
                 "size of the prompt context (0 = from model, at most 4096; --perplexity: 512)");
  app.add_option("-b,--batch-size", o.n_batch,
                 "prompt tokens per forward pass (--numerics llama.cpp: 512, llama.cpp's n_ubatch)")
      ->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", o.n_threads, "number of threads (0 = physical cores)");
  app.add_option("-s,--seed", o.seed, "RNG seed (-1 = random)");
  qe::cli::add_sampling_options(app, o.sampling, "Options");
  qe::cli::add_grammar_options(app, o.grammar, "Options");
  app.add_flag("--ignore-eos", o.ignore_eos,
               "ignore end of stream tokens and continue generating (never samples them)");
  app.add_flag("--no-display-prompt", o.no_display_prompt, "don't print the prompt before the generation");
  app.add_flag("-e,--escape,!--no-escape", o.escape,
               "process escapes (\\n, \\r, \\t, \\', \\\", \\\\, \\xHH) in -p, -f, -sys and chat lines (default: on; "
               "--no-escape: take them literally; --perplexity never does)");
  app.add_option("--isa", o.isa, "kernel level: ref, avx2, avx512, neon (\"\" = best the CPU has)");
  app.add_option("--cache-type", o.cache_type, "KV cache type for K and V: f16 or f32");
  app.add_option("--cache-type-k", o.cache_type_k, "KV cache type for K (as --cache-type; same as V's)");
  app.add_option("--cache-type-v", o.cache_type_v, "KV cache type for V (as --cache-type; same as K's)");
  app.add_flag("--no-repack", o.no_repack,
               "keep q4_0/q4_1/q8_0 weights in the file's layout (no x16 interleaving): slower prompts, "
               "ggml's summation order");
  app.add_flag("--f16-as-bf16", o.f16_as_bf16,
               "repack f16 weight matrices as bf16 (lossy: 8 of f16's 11 significant bits; activations "
               "rounded to bf16 too where the kernels line says vdpbf16ps) for the AVX512_BF16 dot product; "
               "fast numerics only");
  app.add_option("--numerics", o.numerics,
                 "fast (this engine's kernels) or llama.cpp (the logits and tokens llama.cpp's AVX2 CPU "
                 "backend computes, bit for bit; q4_1/q8_0/f16 models, f16 cache; implies --no-repack)")
      ->check(CLI::IsMember({"fast", "llama.cpp"}));
  app.add_flag("-v,--verbose", o.verbose, "more logs on stderr");
  // Chat (llama-cli)
  app.add_flag("--conversation", o.conversation,
               "chat: user messages from stdin, one per line (EOF ends), replies on stdout");
  app.add_flag("--no-conversation", o.no_conversation, "completion, not chat (qrun's default)");
  app.add_flag("--single-turn", o.single_turn, "chat for one message (-p's, else one line of stdin), then exit");
  app.add_option("--system-prompt", o.system_prompt, "system message of the chat");
  app.add_option("--chat-template", o.chat_template,
                 "chat template by llama.cpp's name (\"\" = the model's, chatml without one): " +
                     qe::tokenizer::chat_template_name_list());
  // Perplexity (llama-perplexity)
  app.add_flag("--perplexity", o.perplexity,
               "score the text of -f (llama-perplexity's method; -c default 512)");
  app.add_option("--chunks", o.n_chunks, "max number of chunks to score (-1 = all)");
  app.add_option(
      "--kl-divergence-base", o.kl_divergence_base,
      "with --perplexity: save the log-probabilities to FILE; with --kl-divergence: compare with them");
  app.add_flag("--kl-divergence", o.kl_divergence,
               "KL divergence of this model against --kl-divergence-base");
  app.add_flag("--force", o.force, "with --perplexity: overwrite an existing --kl-divergence-base file");
  // Development options for the tests (hidden: empty group).
  app.add_option("--token-ids", o.token_ids, "prompt as token ids (no tokenization, no BOS)")
      ->delimiter(',')
      ->group("");
  app.add_option("--dump-logits", o.dump_logits,
                 "write the f32 logits of every prompt position, then of each decode step, to FILE")
      ->group("");

  // llama.cpp's one-dash long names, and its GPU flags (accepted, with a note).
  const qe::cli::LlamaFlags llama{{{"-cnv", "--conversation"},
                                   {"-no-cnv", "--no-conversation"},
                                   {"-st", "--single-turn"},
                                   {"-sys", "--system-prompt"},
                                   {"-nr", "--no-repack"},
                                   {"-ctk", "--cache-type-k"},
                                   {"-ctv", "--cache-type-v"},
                                   {"-jf", "--json-schema-file"}},
                                  qe::cli::gpu_flags()};
  if (int rc = qe::cli::parse_llama_style(app, "qrun", argc, argv, llama); rc >= 0) return rc;
  // llama.cpp's own batch where its numbers are the point (the fast kernels give the same bits at any).
  if (o.numerics == "llama.cpp" && app.count("--batch-size") == 0) o.n_batch = 512;

  qe::cli::install_interrupt_handlers();
  std::signal(SIGXFSZ, SIG_IGN);  // past ulimit -f, write() fails (EFBIG): one error line, no partial file
  try {
    qe::Status s = qe::cli::run(o);
    if (!s) {
      fmt::print(stderr, "qrun: {}\n", s.error().message());
      return 1;
    }
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "qrun: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "qrun: {}\n", e.what());
    return 1;
  }
  return 0;
}
