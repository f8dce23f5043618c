// qrun: run a llama-architecture GGUF model with llama.cpp's flags (llama-cli, llama-perplexity).
//   qrun -m model.gguf -p "The capital of France is" -n 32 --temp 0      completion
//   qrun -m model.gguf -cnv [-sys "Be brief."] [--chat-template NAME]      chat on stdin/stdout
//   qrun -m model.gguf --perplexity -f text.txt [-c 512] [--chunks N]     perplexity
//   qrun -m q.gguf --kl-divergence --kl-divergence-base base.bin          KL divergence vs a saved run
// stdout carries only results (the prompt and the generated text, the replies, the scores); logs and
// timings go to stderr.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>
#include <new>
#include <string_view>
#include <vector>

#include "cli/qrun/options.h"
#include "tokenizer/chat_template.h"

int main(int argc, char** argv) {
  // llama.cpp spells three long options with one dash; CLI11 would read "-cnv" as -c "nv", "-sys" as
  // -s "ys" and "-nr" as -n "r", so they are renamed before parsing.
  std::vector<char*> args(argv, argv + argc);
  static char kConversation[] = "--conversation", kSystemPrompt[] = "--system-prompt", kNoRepack[] = "--no-repack";
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--") break;
    if (a == "-cnv") args[i] = kConversation;
    if (a == "-sys") args[i] = kSystemPrompt;
    if (a == "-nr") args[i] = kNoRepack;
  }

  qe::cli::RunOptions o;
  CLI::App app{"qrun: text generation, chat and perplexity with a llama-architecture GGUF model"};
  app.set_version_flag("--version", "qrun 0.1.0");
  app.add_option("-m,--model", o.model, "model path (GGUF)")->required();
  app.add_option("-p,--prompt", o.prompt, "prompt to start generation with");
  app.add_option("-f,--file", o.prompt_file, "a file containing the prompt");
  app.add_option("-n,--n-predict", o.n_predict, "number of tokens to predict (-1 = until end of generation)");
  app.add_option("-c,--ctx-size", o.n_ctx,
                 "size of the prompt context (0 = from model, at most 4096; --perplexity: 512)");
  app.add_option("-b,--batch-size", o.n_batch, "prompt tokens per forward pass")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", o.n_threads, "number of threads (default: physical cores)");
  app.add_option("-s,--seed", o.seed, "RNG seed (-1 = random)");
  app.add_option("--temp", o.sampling.temp, "temperature (<= 0: greedy)")->capture_default_str();
  app.add_option("--top-k", o.sampling.top_k, "top-k sampling (0 = disabled)")->capture_default_str();
  app.add_option("--top-p", o.sampling.top_p, "top-p sampling (1.0 = disabled)")->capture_default_str();
  app.add_option("--min-p", o.sampling.min_p, "min-p sampling (0.0 = disabled)")->capture_default_str();
  app.add_option("--repeat-penalty", o.sampling.repeat_penalty,
                 "penalize repeat sequence of tokens (1.0 = disabled)")
      ->capture_default_str();
  app.add_option("--repeat-last-n", o.sampling.repeat_last_n,
                 "last n tokens to consider for penalize (0 = disabled, -1 = ctx_size)")
      ->capture_default_str();
  app.add_option("--isa", o.isa, "kernel level: ref, avx2, avx512, neon (default: best the CPU has)");
  app.add_option("--cache-type", o.cache_type, "KV cache type: f16 or f32")->capture_default_str();
  app.add_flag("--no-repack", o.no_repack,
               "-nr: keep q4_0/q4_1/q8_0 weights in the file's layout (no x16 interleaving): slower prompts, "
               "ggml's summation order");
  app.add_flag("--f16-as-bf16", o.f16_as_bf16,
               "repack f16 weight matrices as bf16 (lossy: 8 of f16's 11 significant bits; activations "
               "rounded to bf16 too) for the AVX512_BF16 dot product; fast numerics only");
  app.add_option("--numerics", o.numerics,
                 "fast (this engine's kernels) or llama.cpp (the logits and tokens llama.cpp's AVX2 CPU "
                 "backend computes, bit for bit; q4_1/q8_0/f16 models, f16 cache; implies --no-repack)")
      ->check(CLI::IsMember({"fast", "llama.cpp"}))
      ->capture_default_str();
  app.add_flag("-v,--verbose", o.verbose, "more logs on stderr");
  // Chat (llama-cli)
  app.add_flag("--conversation", o.conversation,
               "-cnv: chat: user messages from stdin, one per line (EOF ends), replies on stdout");
  app.add_option("--system-prompt", o.system_prompt, "-sys: system message of the chat");
  app.add_option("--chat-template", o.chat_template,
                 "chat template by llama.cpp's name (default: the model's, chatml without one): " +
                     qe::tokenizer::chat_template_name_list());
  // Perplexity (llama-perplexity)
  app.add_flag("--perplexity", o.perplexity,
               "score the text of -f (llama-perplexity's method; -c default 512)");
  app.add_option("--chunks", o.n_chunks, "max number of chunks to score (-1 = all)")->capture_default_str();
  app.add_option(
      "--kl-divergence-base", o.kl_divergence_base,
      "with --perplexity: save the log-probabilities to FILE; with --kl-divergence: compare with them");
  app.add_flag("--kl-divergence", o.kl_divergence,
               "KL divergence of this model against --kl-divergence-base");
  // Development options for the tests (hidden: empty group).
  app.add_option("--token-ids", o.token_ids, "prompt as token ids (no tokenization, no BOS)")
      ->delimiter(',')
      ->group("");
  app.add_option("--dump-logits", o.dump_logits, "write the f32 logits of every prompt position to FILE")
      ->group("");

  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "qrun: {}\n", e.what());
    return 1;
  }

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
