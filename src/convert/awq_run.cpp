#include "convert/awq_run.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "convert/awq_capture.h"
#include "convert/awq_gptq.h"
#include "convert/awq_search.h"
#include "convert/imatrix_file.h"
#include "convert/types.h"
#include "model/model.h"

namespace qe::convert {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The Gram matrices are summed over every calibration token: the error-compensated rounding inverts them,
// and on SmolLM2 a quarter of the 64k tokens gave a visibly worse model (q4_0 PPL ratio 1.083 against
// 1.069 with all of them) for a third less calibration time.
constexpr int64_t kGramTokens = int64_t{1} << 40;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The f32 working copy of the model, beside the output (same file system: no surprise about space on
// /tmp), removed however the conversion ends.
class TempModel {
 public:
  explicit TempModel(const std::string& output) {
    const fs::path out(output);
    path_ = (out.parent_path().empty() ? fs::path(".") : out.parent_path()) /
            fmt::format(".{}.awq-f32-{}.tmp", out.filename().string(), ::getpid());
  }
  ~TempModel() {
    if (fd_ >= 0) ::close(fd_);
    std::error_code ec;
    fs::remove(path_, ec);
  }
  TempModel(const TempModel&) = delete;
  TempModel& operator=(const TempModel&) = delete;
  std::string path() const { return path_.string(); }

  // Overwrites a tensor's bytes in place (the file was written by us with these shapes).
  Status write(const GgufTensorInfo& t, std::span<const float> values) {
    QE_CHECK(values.size_bytes() == t.n_bytes && t.type == GgmlType::F32);
    if (fd_ < 0 && (fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC)) < 0)
      return Error{path(), t.name, "cannot open the working copy for writing"};
    const auto* p = reinterpret_cast<const char*>(values.data());
    for (uint64_t done = 0; done < t.n_bytes;) {
      const ssize_t n = ::pwrite(fd_, p + done, t.n_bytes - done, static_cast<off_t>(t.file_offset + done));
      if (n <= 0) return Error{path(), t.name, "cannot write the working copy"};
      done += static_cast<uint64_t>(n);
    }
    return {};
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// ---- One block's groups, from the f32 working copy.

struct GroupSpec {
  const char* name;                     // report name
  std::vector<const char*> tensors;     // blk.N.<tensor>.weight
  const ChannelStats BlockStats::*input;
  const char* importance_entry;         // the imatrix entry of this input in llama.cpp's files
};

const GroupSpec kGroups[] = {
    {"qkv", {"attn_q", "attn_k", "attn_v"}, &BlockStats::attn_in, "attn_q"},
    {"o", {"attn_output"}, &BlockStats::attn_out, "attn_output"},
    {"gate_up", {"ffn_gate", "ffn_up"}, &BlockStats::ffn_in, "ffn_gate"},
    {"down", {"ffn_down"}, &BlockStats::ffn_down_in, "ffn_down"},
};
enum { kQkv, kO, kGateUp, kDown };

std::string tensor_name(int64_t layer, std::string_view t) { return fmt::format("blk.{}.{}.weight", layer, t); }

AwqGroupInput group_input(const ChannelStats& st, const std::vector<float>* imatrix_importance) {
  AwqGroupInput in;
  in.cols = st.cols;
  const auto n = static_cast<double>(std::max<int64_t>(st.n_tokens, 1));
  const auto ng = static_cast<float>(std::max<int64_t>(st.n_gram, 1));
  for (int64_t j = 0; j < st.cols; ++j) {
    in.mean_abs.push_back(static_cast<float>(st.sum_abs[static_cast<size_t>(j)] / n));
    in.importance.push_back(static_cast<float>(st.sum_sq[static_cast<size_t>(j)] / n));
  }
  if (imatrix_importance) in.importance = *imatrix_importance;
  in.gram.resize(st.gram.size());
  std::transform(st.gram.begin(), st.gram.end(), in.gram.begin(), [ng](float g) { return g / ng; });
  return in;
}

// o's scales must be equal over the query heads that read the same kv head (v's rows carry 1/s, and a
// v row serves `group` heads): their salience is averaged.
void tie_over_query_heads(std::vector<float>& mean_abs, const model::Config& c) {
  const int64_t group = c.n_heads / c.n_kv_heads, hd = c.head_dim;
  for (int64_t g = 0; g < c.n_kv_heads; ++g)
    for (int64_t j = 0; j < hd; ++j) {
      float sum = 0.0f;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) sum += mean_abs[static_cast<size_t>(h * hd + j)];
      for (int64_t h = g * group; h < (g + 1) * group; ++h) mean_abs[static_cast<size_t>(h * hd + j)] = sum / group;
    }
}

// What the group's output was made with: "awq" (scales or clipping), then the roundings beyond the
// plain one ("gptq", "weighted"); "rtn" when none of it helped.
std::string method_name(float alpha, int clipped, bool weighted, bool gptq) {
  std::string m = alpha > 0.0f || clipped > 0 ? "awq" : "";
  for (auto [used, name] : {std::pair{gptq, "gptq"}, std::pair{weighted, "weighted"}})
    if (used) m += (m.empty() ? "" : "+") + std::string(name);
  return m.empty() ? "rtn" : m;
}

struct Calibrated {
  AwqReport report;
  std::map<std::string, std::vector<float>> importance;  // tensors to quantize weighted
  std::map<std::string, std::vector<std::byte>> bytes;   // tensors whose output bytes are final
  std::vector<BlockStats> stats;                         // for --imatrix-out
};

// Stages 2 and 3 on the working copy.
Result<Calibrated> calibrate(const ConvertJob& job, TempModel& tmp, const ConvertObserver& obs) {
  const AwqOptions& o = *job.awq;
  model::ModelOptions mo;
  mo.cache_type = GgmlType::F32;  // the teacher's activations, unrounded
  mo.repack = false;
  mo.n_threads = job.n_threads;
  Result<std::unique_ptr<model::Model>> m = model::open_model(tmp.path(), mo);
  if (!m) return m.error();
  const model::Config& c = (*m)->config;
  const GgufFile& file = (*m)->file;

  Calibrated out;
  AwqReport& rep = out.report;
  Result<CalibrationWindows> cw =
      calibration_windows((*m)->tok, o.calib_path, o.n_samples, o.n_ctx, o.seed, rep.warnings);
  if (!cw) return cw.error();
  rep.calib_path = o.calib_path;
  rep.calib_xxh3 = cw->xxh3;
  rep.n_samples = static_cast<int64_t>(cw->windows.size());
  rep.n_ctx = o.n_ctx;
  rep.n_tokens = rep.n_samples * o.n_ctx;
  rep.n_grid = o.n_grid;
  rep.clip = o.clip;
  rep.seed = o.seed;
  if (obs.log)
    obs.log(fmt::format("awq: {}: {} tokens, {} windows of {}; calibrating on {}", o.calib_path, cw->n_text_tokens,
                        cw->n_available, o.n_ctx, rep.n_samples));
  if (o.n_ctx > c.n_ctx_train && c.n_ctx_train > 0)
    rep.warnings.push_back(fmt::format("calibration windows of {} tokens are longer than the model's training "
                                       "context of {}", o.n_ctx, c.n_ctx_train));

  // An imatrix file, when given, is the importance source instead of the captured E[x^2].
  std::optional<ImatrixData> imatrix;
  if (!job.imatrix.empty()) {
    Result<ImatrixData> d = read_imatrix(job.imatrix);
    if (!d) return d.error();
    imatrix = std::move(*d);
  }
  auto imatrix_importance = [&](int64_t layer, const char* entry, int64_t cols) -> std::optional<std::vector<float>> {
    if (!imatrix) return std::nullopt;
    const std::string name = tensor_name(layer, entry);
    for (const ImatrixEntry& e : imatrix->entries)
      if (e.name == name) {
        if (e.n_mat() != 1 || e.n_cols() != cols)
          return std::nullopt;  // reported below as a fallback to the captured importance
        return importance(e);
      }
    return std::nullopt;
  };

  const Clock::time_point t_capture = Clock::now();
  Result<std::vector<BlockStats>> stats = capture_statistics(**m, *cw, kGramTokens, [&](int64_t done, int64_t total) {
    if (obs.awq_progress) obs.awq_progress({AwqProgress::Phase::kCapture, done, total});
  }, obs.stop_requested);
  if (!stats) return stats.error();
  rep.capture_seconds = seconds_since(t_capture);
  rep.n_gram_tokens = (*stats)[0].attn_in.n_gram;

  const Clock::time_point t_search = Clock::now();
  const ModelShape model = model_shape(file);
  const int n_threads = (*m)->n_threads();
  for (int64_t l = 0; l < c.n_layers; ++l) {
    if (obs.stop_requested && obs.stop_requested()) return interrupted_error(job.output);
    const BlockStats& bs = (*stats)[static_cast<size_t>(l)];
    AwqLayerReport lrep;
    lrep.layer = l;
    std::vector<AwqTensor> tensors[4];
    AwqGroupInput inputs[4];
    AlphaSearch found[4];
    for (int g = 0; g < 4; ++g) {
      const GroupSpec& spec = kGroups[g];
      const ChannelStats& st = bs.*spec.input;
      AwqGroupReport gr;
      gr.name = spec.name;
      std::optional<std::vector<float>> imp = imatrix_importance(l, spec.importance_entry, st.cols);
      if (imatrix && !imp)
        rep.warnings.push_back(fmt::format("{}: no usable entry for {}; weighting by the calibration's own E[x^2]",
                                           job.imatrix, tensor_name(l, spec.importance_entry)));
      inputs[g] = group_input(st, imp ? &*imp : nullptr);
      if (g == kO) tie_over_query_heads(inputs[g].mean_abs, c);
      bool finite = st.finite() && all_finite(inputs[g].importance);
      for (const char* tn : spec.tensors) {
        const std::string name = tensor_name(l, tn);
        const GgufTensorInfo* info = file.find_tensor(name);
        if (!info || info->type != GgmlType::F32 || info->dims.size() != 2 ||
            static_cast<int64_t>(info->dims[0]) != st.cols)
          return Error{job.input, name, "missing, or not the shape the calibration needs"};
        AwqTensor t;
        t.name = name;
        t.type = choose_tensor_type(job.policy, name, info->dims, model).type;
        t.rows = static_cast<int64_t>(info->dims[1]);
        t.cols = st.cols;
        t.w = reinterpret_cast<const float*>(info->data.data());
        t.clip = std::string_view(tn) != "attn_q" && std::string_view(tn) != "attn_k";
        if (!all_finite({t.w, static_cast<size_t>(t.rows * t.cols)})) {
          finite = false;
          gr.fallback = fmt::format("non-finite weights in {}: round-to-nearest", name);
        }
        tensors[g].push_back(std::move(t));
      }
      if (!finite && gr.fallback.empty())
        gr.fallback = "non-finite activations in the calibration: round-to-nearest";
      if (finite) {
        found[g] = search_alpha(tensors[g], inputs[g], o.n_grid, n_threads, o.fixed_alpha);
        if (found[g].alpha == 0.0f) gr.fallback = "no alpha beat 0 (no scaling)";
      } else {
        found[g].scale.assign(static_cast<size_t>(st.cols), 1.0f);
        inputs[g].importance.clear();  // no weighted rounding either
        for (AwqTensor& t : tensors[g]) t.clip = false;
      }
      lrep.groups.push_back(std::move(gr));
    }

    // Fold the scales: o's go into v's rows (kv channel g*hd + j carries head h = g*group's scale), down's
    // into up's rows; then every tensor's clipping and rounding.
    const int64_t group = c.n_heads / c.n_kv_heads, hd = c.head_dim;
    AwqTensor& v = tensors[kQkv][2];
    v.row_scale.resize(static_cast<size_t>(v.rows));
    for (int64_t r = 0; r < v.rows; ++r)
      v.row_scale[static_cast<size_t>(r)] = found[kO].scale[static_cast<size_t>((r / hd) * group * hd + r % hd)];
    tensors[kGateUp][1].row_scale = found[kDown].scale;

    for (int g = 0; g < 4; ++g) {
      AwqGroupReport& gr = lrep.groups[static_cast<size_t>(g)];
      gr.alpha = found[g].alpha;
      bool any_weighted = false, any_gptq = false;
      // Error-compensated rounding needs the (scaled) Gram's inverse factor, once per group.
      std::vector<float> u;
      const bool gptq = std::any_of(tensors[g].begin(), tensors[g].end(),
                                    [](const AwqTensor& t) { return gptq_supports(t.type); });
      if (gptq && !inputs[g].importance.empty()) {
        u = gptq_factor(inputs[g].gram, inputs[g].cols, found[g].scale, n_threads);
        if (u.empty() && gr.fallback.empty()) gr.fallback = "Gram matrix not positive definite: no error-compensated rounding";
      }
      for (AwqTensor& t : tensors[g]) {
        finish_tensor(t, found[g].scale, inputs[g], o.clip, n_threads, u);
        gr.loss_rtn += t.loss_rtn;
        gr.loss_awq += t.loss;
        gr.clipped_rows += t.clipped_rows;
        any_weighted |= t.weighted_rows > 0;
        any_gptq |= t.gptq_rows > 0;
        if (!t.bytes.empty())
          out.bytes[t.name] = std::move(t.bytes);
        else if (t.weighted)
          out.importance[t.name] = scaled_importance(inputs[g], found[g].scale);
        if (Status s = tmp.write(*file.find_tensor(t.name), t.out); !s) return s.error();
        std::vector<float>().swap(t.out);
      }
      gr.method = method_name(gr.alpha, gr.clipped_rows, any_weighted, any_gptq);
    }
    // The norms take 1/s of the groups they feed.
    for (auto [norm, g] : {std::pair{"attn_norm", kQkv}, std::pair{"ffn_norm", kGateUp}}) {
      const std::string name = fmt::format("blk.{}.{}.weight", l, norm);
      const GgufTensorInfo* info = file.find_tensor(name);
      if (!info || info->type != GgmlType::F32 || info->n_elements != static_cast<uint64_t>(inputs[g].cols))
        return Error{job.input, name, "missing, or not the f32 vector the scales fold into"};
      const auto* w = reinterpret_cast<const float*>(info->data.data());
      std::vector<float> folded(static_cast<size_t>(inputs[g].cols));
      for (size_t j = 0; j < folded.size(); ++j) folded[j] = w[j] / found[g].scale[j];
      if (Status s = tmp.write(*info, folded); !s) return s.error();
    }
    rep.layers.push_back(std::move(lrep));
    if (obs.awq_progress) obs.awq_progress({AwqProgress::Phase::kSearch, l + 1, c.n_layers});
  }
  rep.search_seconds = seconds_since(t_search);
  out.stats = std::move(*stats);
  return out;
}

// The calibration's sums of x^2 in llama-imatrix's layout: one entry per layer matrix, in the original
// model's basis (what llama-quantize --imatrix on the original weights expects).
ImatrixData imatrix_of(const std::vector<BlockStats>& stats, const AwqReport& rep) {
  ImatrixData d;
  d.datasets = {rep.calib_path};
  d.chunk_count = rep.n_samples;
  d.chunk_size = rep.n_ctx;
  for (size_t l = 0; l < stats.size(); ++l)
    for (const GroupSpec& spec : kGroups)
      for (const char* tn : spec.tensors) {
        const ChannelStats& st = stats[l].*spec.input;
        ImatrixEntry e;
        e.name = tensor_name(static_cast<int64_t>(l), tn);
        e.in_sum2.assign(st.sum_sq.begin(), st.sum_sq.end());
        e.counts = {static_cast<float>(st.n_tokens)};
        d.entries.push_back(std::move(e));
      }
  std::sort(d.entries.begin(), d.entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return d;
}

// The output, the imatrix and the card must not be the input (or a file of an input directory): checked
// before the calibration, since the conversions inside it only see the working copy.
Status refuse_inputs_as_outputs(const ConvertJob& job) {
  std::vector<fs::path> inputs;
  std::error_code ec;
  if (fs::is_directory(job.input, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(job.input, ec)) inputs.push_back(e.path());
  } else {
    inputs.push_back(job.input);
  }
  inputs.push_back(job.awq->calib_path);
  if (!job.imatrix.empty()) inputs.push_back(job.imatrix);
  std::vector<std::string> outputs = job.extra_outputs;
  outputs.push_back(job.output);
  if (!job.imatrix_out.empty()) outputs.push_back(job.imatrix_out);
  for (const std::string& out : outputs)
    for (const fs::path& in : inputs)
      if (fs::exists(out, ec) && fs::equivalent(out, in, ec))
        return Error{out, "", fmt::format("is an input file ({}); refusing to overwrite it", in.string())};
  return {};
}

std::vector<GgufKv> provenance(const AwqReport& r, const std::string& imatrix) {
  return {
      {"quantize.awq.method", GgufValue::str("awq")},
      {"quantize.awq.file", GgufValue::str(r.calib_path)},
      {"quantize.awq.file_xxh3", GgufValue::str(fmt::format("{:016x}", r.calib_xxh3))},
      {"quantize.awq.samples", GgufValue::u32(static_cast<uint32_t>(r.n_samples))},
      {"quantize.awq.ctx", GgufValue::u32(static_cast<uint32_t>(r.n_ctx))},
      {"quantize.awq.tokens", GgufValue::u64(static_cast<uint64_t>(r.n_tokens))},
      {"quantize.awq.grid", GgufValue::u32(static_cast<uint32_t>(r.n_grid))},
      {"quantize.awq.clip", GgufValue::boolean(r.clip)},
      {"quantize.awq.seed", GgufValue::u64(r.seed)},
      {"quantize.awq.importance", GgufValue::str(imatrix.empty() ? "calibration" : imatrix)},
  };
}

}  // namespace

Result<ConvertResult> run_awq_convert(const ConvertJob& job, const ConvertObserver& obs) {
  const Clock::time_point t0 = Clock::now();
  const AwqOptions& o = *job.awq;
  if (job.to_hf) return Error{job.input, "awq", "calibration writes a GGUF, not a Hugging Face directory", "awq"};
  if (o.n_grid < 1) return Error{job.input, "awq grid", fmt::format("{} points (at least 1)", o.n_grid), "awq_grid"};
  Result<ConvertMode> mode = detect_mode(job);
  if (!mode) return mode.error();
  if (Status s = refuse_inputs_as_outputs(job); !s) return s.error();
  if (!job.overwrite && fs::exists(job.output)) return Error{job.output, "", "already exists", "overwrite"};
  if (!job.imatrix_out.empty() && !job.overwrite && fs::exists(job.imatrix_out))
    return Error{job.imatrix_out, "", "already exists", "overwrite"};
  if (*mode == ConvertMode::kRequantize) {  // refuse sub-8-bit sources now, not after the calibration
    Result<GgufFile> g = GgufFile::open(job.input);
    if (!g) return g.error();
    if (Result<std::vector<TensorPlan>> p = plan_requantize(*g, job.policy, job.allow_requantize); !p) return p.error();
  }

  // 1. The input as an f32 GGUF: the model the calibration runs and the search reads.
  TempModel tmp(job.output);
  ConvertJob f32 = job;
  f32.awq.reset();
  f32.output = tmp.path();
  f32.policy = TypePolicy{};
  f32.policy.target = GgmlType::F32;
  f32.policy.pure = true;
  f32.policy.leave_output = job.policy.leave_output;  // kept as the source has it, through both stages
  f32.allow_requantize = true;
  f32.overwrite = true;
  f32.imatrix.clear();
  f32.imatrix_out.clear();
  f32.extra_outputs.clear();
  f32.kv_overrides.clear();
  ConvertObserver quiet;
  quiet.log = obs.log;
  quiet.stop_requested = obs.stop_requested;
  // A stop in a stage is reported against the output the user named, not the working copy.
  auto failed = [&](const Error& e) { return is_interrupted(e) ? interrupted_error(job.output) : e; };
  Result<ConvertResult> r1 = run_convert(f32, quiet);
  if (!r1) return failed(r1.error());

  // 2, 3. Statistics, search, the working copy rewritten.
  Result<Calibrated> cal = calibrate(job, tmp, obs);
  if (!cal) return failed(cal.error());

  // 4. The working copy to the output type.
  ConvertJob out = job;
  out.awq.reset();
  out.input = tmp.path();
  out.allow_requantize = true;
  out.imatrix.clear();
  out.importance = std::make_shared<const std::map<std::string, std::vector<float>>>(std::move(cal->importance));
  out.prequantized = std::make_shared<const std::map<std::string, std::vector<std::byte>>>(std::move(cal->bytes));
  std::vector<GgufKv> keys = provenance(cal->report, job.imatrix);
  out.extra_metadata.insert(out.extra_metadata.begin(), keys.begin(), keys.end());
  if (!job.imatrix_out.empty()) out.extra_outputs.push_back(job.imatrix_out);
  Result<ConvertResult> res = run_convert(out, obs);
  if (!res) return res;
  if (!job.imatrix_out.empty()) {
    if (Status s = write_imatrix_gguf(job.imatrix_out, imatrix_of(cal->stats, cal->report), job.overwrite); !s)
      return s.error();
    res->files_written.push_back(job.imatrix_out);
  }
  res->mode = *mode;
  res->warnings.insert(res->warnings.begin(), r1->warnings.begin(), r1->warnings.end());
  if (res->license.empty()) res->license = r1->license;
  if (*mode == ConvertMode::kHfToGguf) res->model_name = r1->model_name;
  res->awq = std::move(cal->report);
  res->seconds = seconds_since(t0);
  return res;
}

}  // namespace qe::convert
