#include "cli/qconvert/convert.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "cli/interrupt.h"
#include "cli/isa_choice.h"
#include "cli/kv_override.h"
#include "cli/qconvert/convert_report.h"
#include "cli/units.h"
#include "formats/atomic_file.h"
#include "kernels/kernel_table.h"
#include "kernels/threads.h"
#include "convert/run.h"

namespace qe::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;


// Why a tensor got its type, in qconvert's words: the library says which override chose it, we name the
// flag it came from ("--tensor-type attn=q8_0", then the fallback, if any).
std::string type_reason(const convert::TypePolicy& policy, std::optional<size_t> override_index,
                        const std::string& reason) {
  if (!override_index) return reason;
  const convert::TensorTypeOverride& o = policy.overrides.at(*override_index);
  std::string words = "--tensor-type " + convert::tensor_type_override_spec(o);
  return reason.empty() ? words : words + "; " + reason;
}

// Terminal: one bar line redrawn at most 10 times a second. Otherwise (logs, CI): one line per tensor.
// The calibration (--awq) comes first, drawn the same way: a bar per phase (kept when the phase ends),
// or a line every 10% of the capture and one per searched block.
class Progress {
 public:
  Progress(bool verbose, const convert::TypePolicy& policy)
      : tty_(::isatty(STDERR_FILENO) != 0), verbose_(verbose), policy_(policy), t0_(Clock::now()) {}

  void log(const std::string& line) {
    clear();
    fmt::print(stderr, "qconvert: {}\n", printable(line));
  }

  void awq(const convert::AwqProgress& a) {
    const auto now = Clock::now();
    const bool capture = a.phase == convert::AwqProgress::Phase::kCapture;
    if (!awq_phase_ || *awq_phase_ != a.phase) {
      awq_phase_ = a.phase;
      awq_t0_ = now;
      awq_step_ = 0;
    }
    const char* what = capture ? "capture" : "search";
    const char* unit = capture ? "windows" : "blocks";
    const double s = std::chrono::duration<double>(now - awq_t0_).count();
    const double frac = a.total > 0 ? static_cast<double>(a.done) / static_cast<double>(a.total) : 1.0;
    if (!tty_) {
      // capture: each 10% step; search: each block (a block's search takes seconds to minutes)
      const int64_t step = capture ? static_cast<int64_t>(frac * 10) : a.done;
      if (a.done == 0 || step <= awq_step_) return;
      awq_step_ = step;
      fmt::print(stderr, "qconvert: calibration {} {}/{} {} ({:.0f}%), {:.1f} s\n", what, a.done, a.total, unit,
                 frac * 100, s);
      return;
    }
    const bool done = a.done >= a.total;
    if (!done && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double eta = frac > 0 ? s * (1.0 - frac) / frac : 0.0;
    fmt::print(stderr, "\r\033[K{} {:3.0f}% calibration {} {}/{} {} ", bar(frac), frac * 100, what, a.done, a.total, unit);
    if (done)
      fmt::print(stderr, "{:.1f} s\n", s);  // the finished phase stays on screen
    else
      fmt::print(stderr, "ETA {:.0f}s", eta);
    drawn_ = !done;
  }

  void tensor(const convert::TensorPlan& p, size_t i, size_t n) {
    if (i == 0) t0_ = Clock::now();  // the ETA is the tensors' own, not counting a calibration before them
    name_ = printable(p.name);       // a hostile input's tensor names reach the terminal only escaped
    index_ = i;
    count_ = n;
    const std::string reason = type_reason(policy_, p.override_index, p.reason);
    if (!tty_) {
      std::string note = p.copy ? " (copied)" : reason.empty() ? "" : " (" + reason + ")";
      fmt::print(stderr, "[{:>4}/{}] {:<32} {:>5} -> {:<5} {}{}\n", i + 1, n, name_,
                 ggml_type_name(p.computed.empty() ? p.src_type : GgmlType::F32), ggml_type_name(p.out_type),
                 bytes_text(p.out_bytes()), note);
    } else if (verbose_ && !reason.empty()) {
      clear();
      fmt::print(stderr, "qconvert: {}: {}\n", name_, reason);
    }
  }

  void bytes(uint64_t done, uint64_t total) {
    if (!tty_) return;
    const auto now = Clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - t0_).count();
    const double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    const double eta = frac > 0 ? s * (1.0 - frac) / frac : 0.0;
    fmt::print(stderr, "\r\033[K{} {:3.0f}% {:>4}/{} {:<28.28} {}/{} ETA {:.0f}s", bar(frac), frac * 100, index_ + 1,
               count_, name_, bytes_text(done), bytes_text(total), eta);
    drawn_ = true;
  }

  void clear() {
    if (tty_ && drawn_) fmt::print(stderr, "\r\033[K");
    drawn_ = false;
  }

 private:
  static std::string bar(double frac) {
    constexpr int kWidth = 24;
    const int fill = std::clamp(static_cast<int>(frac * kWidth), 0, kWidth);
    std::string b(kWidth + 2, '.');
    b.front() = '[';
    b.back() = ']';
    std::fill_n(b.begin() + 1, fill, '#');
    return b;
  }

  bool tty_, verbose_;
  const convert::TypePolicy& policy_;
  bool drawn_ = false;
  Clock::time_point t0_, last_{};
  std::string name_;
  size_t index_ = 0, count_ = 0;
  std::optional<convert::AwqProgress::Phase> awq_phase_;
  Clock::time_point awq_t0_{};
  int64_t awq_step_ = 0;
};

struct AwqMethod {
  std::string_view name;
  std::string_view type;
};
constexpr AwqMethod kAwqMethods[] = {{"awq_q4_0", "q4_0"}, {"awq_q4_1", "q4_1"}, {"awq_q8_0", "q8_0"}, {"awq_f16", "f16"}};

// The flags' rules for importance and calibration. --method sets `type`; returns the calibration
// settings when --awq is given.
Result<std::optional<convert::AwqOptions>> awq_settings(const ConvertOptions& opt, std::string& type) {
  if (!opt.method.empty()) {
    const AwqMethod* m = nullptr;
    for (const AwqMethod& x : kAwqMethods)
      if (x.name == opt.method) m = &x;
    if (m == nullptr)
      return Error{"", "--method", fmt::format("'{}' is not one of awq_q4_0, awq_q4_1, awq_q8_0, awq_f16", opt.method)};
    if (opt.awq.empty())
      return Error{"", "--method", fmt::format("{} calibrates: give the calibration text with --awq CALIB.txt", m->name)};
    if (!type.empty() && convert::parse_output_type(type) != convert::parse_output_type(m->type))
      return Error{"", "--method", fmt::format("{} writes {}, but --type is {}", m->name, m->type, type)};
    type = std::string(m->type);
  }
  if (!opt.imatrix.empty() && !opt.to_hf.empty())
    return Error{"", "--imatrix", "applies to quantized GGUF outputs, not to --to-hf"};
  if (opt.awq.empty()) {
    const std::pair<bool, std::string_view> knobs[] = {
        {opt.awq_samples.has_value(), "--awq-samples"}, {opt.awq_ctx.has_value(), "--awq-ctx"},
        {opt.awq_grid.has_value(), "--awq-grid"},       {opt.no_awq_clip, "--no-awq-clip"},
        {opt.seed.has_value(), "--seed"},               {!opt.imatrix_out.empty(), "--imatrix-out"}};
    for (const auto& [given, flag] : knobs)
      if (given) return Error{"", std::string(flag), "needs --awq CALIB.txt (it is a setting of the calibration)"};
    return std::optional<convert::AwqOptions>{};
  }
  if (!opt.to_hf.empty()) return Error{"", "--awq", "calibrates a GGUF output; it does not apply to --to-hf"};
  convert::AwqOptions a;
  a.calib_path = opt.awq;
  a.n_samples = opt.awq_samples.value_or(a.n_samples);
  a.n_ctx = opt.awq_ctx.value_or(a.n_ctx);
  a.n_grid = opt.awq_grid.value_or(a.n_grid);
  a.clip = !opt.no_awq_clip;
  a.seed = opt.seed.value_or(a.seed);
  return std::optional<convert::AwqOptions>{std::move(a)};
}

Status write_text(const std::string& path, const std::string& text, bool overwrite) {
  Result<AtomicFile> f = AtomicFile::create(path, overwrite);
  if (!f) return f.error();
  if (Status s = f->write(text.data(), text.size()); !s) return s;
  return f->commit();
}

std::string card_path(const ConvertOptions& opt) {
  fs::path p(opt.output);
  return (p.extension() == ".gguf" ? p.replace_extension(".md") : fs::path(opt.output + ".md")).string();
}

}  // namespace

Status run_conversion(const ConvertOptions& opt) {
  if (Status s = choose_isa(opt.isa); !s) return s;
  if (opt.output.empty() == opt.to_hf.empty())
    return Error{opt.input, "", opt.output.empty() ? "give an output: -o OUT.gguf or --to-hf DIR"
                                                   : "-o and --to-hf exclude each other"};

  convert::ConvertJob job;
  if (!opt.kv_overrides.empty() && !opt.to_hf.empty())
    return Error{"", "--override-kv", "sets GGUF metadata; it does not apply to --to-hf"};
  for (const std::string& spec : opt.kv_overrides) {
    Result<KvOverride> o = parse_kv_override(spec);
    if (!o) return o.error();
    Result<GgufKv> kv = quantize_kv(*o);
    if (!kv) return kv.error();
    if (const auto* i = std::get_if<int64_t>(&o->value); i && *i < 0)
      fmt::print(stderr, "qconvert: warning: --override-kv {}: written as {} (llama-quantize writes an int as u32 of "
                         "its absolute value)\n", printable(spec), -*i);
    job.kv_overrides.push_back(std::move(*kv));
  }
  job.input = opt.input;
  job.output = opt.to_hf.empty() ? opt.output : opt.to_hf;
  job.to_hf = !opt.to_hf.empty();
  job.allow_requantize = opt.allow_requantize;
  job.overwrite = opt.force;
  job.n_threads = opt.n_threads > 0 ? opt.n_threads : kernels::default_thread_count();
  job.policy.pure = opt.pure;
  Result<convert::ConvertMode> mode = convert::detect_mode(job);
  if (!mode) return mode.error();

  std::string type = opt.type;
  Result<std::optional<convert::AwqOptions>> awq = awq_settings(opt, type);
  if (!awq) return awq.error();
  job.awq = std::move(*awq);
  job.imatrix = opt.imatrix;
  job.imatrix_out = opt.imatrix_out;
  if (type.empty()) {
    if (*mode == convert::ConvertMode::kRequantize)
      return Error{opt.input, "--type", fmt::format("required to convert a GGUF ({})", convert::file_type_names())};
    type = *mode == convert::ConvertMode::kGgufToHf ? "f32" : "f16";
  }
  // llama-quantize's file types: a tensor type's name is its plain file type (q4_0, q6_k), a mix's name
  // the mix (Q4_K_M; Q4_K is its alias).
  std::optional<convert::FileType> ft = convert::parse_file_type(type);
  if (!ft) return Error{"", "--type", fmt::format("'{}' is not one of {}", type, convert::file_type_names())};
  const GgmlType t = ft->base;
  if (*mode == convert::ConvertMode::kGgufToHf) {
    if (convert::is_quantized(t)) return Error{"", "--type", fmt::format("--to-hf writes f32, f16 or bf16, not {}", type)};
    if (!opt.tensor_types.empty() || opt.pure || !opt.output_tensor_type.empty() || !opt.token_embedding_type.empty() ||
        opt.leave_output_tensor)
      return Error{"", "--to-hf", "--tensor-type, --output-tensor-type, --token-embedding-type, --leave-output-tensor "
                                  "and --pure apply to GGUF outputs"};
    job.export_type = t;
  }
  job.policy.target = t;
  job.policy.file_type = *ft;
  job.policy.has_imatrix = !opt.imatrix.empty();
  for (const auto& [name, flag, slot] : {std::tuple{&opt.output_tensor_type, "--output-tensor-type", &job.policy.output_type},
                                         {&opt.token_embedding_type, "--token-embedding-type", &job.policy.token_embd_type}}) {
    if (name->empty()) continue;
    std::optional<GgmlType> chosen = convert::parse_output_type(*name);
    if (!chosen) return Error{"", flag, fmt::format("'{}' is not one of {}", *name, convert::output_type_names())};
    *slot = *chosen;
  }
  job.policy.leave_output = opt.leave_output_tensor;
  for (const std::string& spec : opt.tensor_types) {
    Result<convert::TensorTypeOverride> o = convert::parse_tensor_type_override(spec);
    if (!o) return o.error();
    job.policy.overrides.push_back(std::move(*o));
  }
  // The card: beside a GGUF output (out.md); in an HF export it is the README.md the library writes
  // (after the front matter that carries the general.* keys), so without --card that one is short.
  const std::string card = opt.card && !job.to_hf ? card_path(opt) : "";
  if (!card.empty()) job.extra_outputs.push_back(card);
  if (opt.card && job.to_hf)
    job.hf_readme_body = [&opt, type](const convert::ConvertResult& r) { return model_card(opt, type, opt.to_hf, r); };
  if (!opt.report.empty()) job.extra_outputs.push_back(opt.report);
  if (!opt.imatrix_out.empty()) job.extra_outputs.push_back(opt.imatrix_out);
  for (const std::string& extra : job.extra_outputs)  // worded as AtomicFile's refusal; main.cpp adds --force
    if (!opt.force && fs::exists(extra)) return Error{extra, "", "already exists", "overwrite"};

  if (opt.verbose) {
    fmt::print(stderr, "qconvert: {}\n", kernels::describe_isa());
    fmt::print(stderr, "qconvert: {} threads, target {}{}\n", job.n_threads, type, opt.pure ? " (pure)" : "");
  }
  Progress progress(opt.verbose, job.policy);
  convert::ConvertObserver obs;
  obs.tensor = [&](const convert::TensorPlan& p, size_t i, size_t n) { progress.tensor(p, i, n); };
  obs.progress = [&](uint64_t done, uint64_t total) { progress.bytes(done, total); };
  obs.awq_progress = [&](const convert::AwqProgress& a) { progress.awq(a); };
  obs.log = [&](const std::string& line) { progress.log(line); };
  obs.stop_requested = [] { return interrupted(); };  // main.cpp installed the handlers
  Result<convert::ConvertResult> res = convert::run_convert(job, obs);
  progress.clear();
  if (!res) return res.error();
  for (convert::TensorReport& x : res->tensors)
    x.reason = type_reason(job.policy, x.override_index, x.reason);

  // One line per distinct reason, so a fallback or the q6_K stand-in is never silent; a fallback (a type
  // that could not be written) is a warning, and lands in the report's and the card's warnings too.
  std::map<std::string, std::pair<int, bool>> reasons;
  for (const convert::TensorReport& x : res->tensors)
    if (!x.reason.empty() && x.reason != "1-D: kept f32") {
      auto& [n, fallback] = reasons[x.reason];
      ++n;
      fallback = fallback || x.fallback;
    }
  for (const auto& [why, r] : reasons)
    if (r.second) res->warnings.push_back(fmt::format("{} tensor{}: {}", r.first, r.first == 1 ? "" : "s", why));
  for (const std::string& w : res->warnings) fmt::print(stderr, "qconvert: warning: {}\n", printable(w));
  for (const auto& [why, r] : reasons)
    if (!r.second) fmt::print(stderr, "qconvert: {} tensor{}: {}\n", r.first, r.first == 1 ? "" : "s", why);
  const auto n_weighted = std::count_if(res->tensors.begin(), res->tensors.end(),
                                        [](const convert::TensorReport& x) { return x.weighted; });
  if (!opt.imatrix.empty() || n_weighted > 0)
    fmt::print(stderr, "qconvert: {} tensor{} rounded with importance weights{}\n", n_weighted,
               n_weighted == 1 ? "" : "s", opt.imatrix.empty() ? "" : " from " + opt.imatrix);
  if (res->awq)
    for (const std::string& line : awq_summary_lines(*res->awq)) fmt::print(stderr, "qconvert: {}\n", line);

  const ConvertTotals tot = totals_of(*res);
  fmt::print(stderr, "qconvert: wrote {}: {} tensors, {} weights, {} thread{}\n", job.output, res->tensors.size(),
             res->n_weights, job.n_threads, job.n_threads == 1 ? "" : "s");
  fmt::print(stderr, "qconvert: source {} -> output {} (file {}), {}, {:.2f} bits/weight, {:.2f} s ({})\n",
             bytes_text(res->src_bytes), bytes_text(res->out_bytes), bytes_text(res->output_file_bytes),
             size_change_text(res->src_bytes, res->out_bytes), tot.bits_per_weight, res->seconds,
             rate_text(res->src_bytes, res->seconds));

  if (!opt.report.empty()) {
    const std::string text = report_json(opt, type, *res).dump(2) + "\n";
    if (Status s = write_text(opt.report, text, opt.force); !s) return s;
  }
  if (!card.empty())
    if (Status s = write_text(card, model_card(opt, type, job.output, *res), opt.force); !s) return s;
  return {};
}

}  // namespace qe::cli
