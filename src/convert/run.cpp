#include "convert/run.h"

#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "convert/awq_run.h"
#include "convert/general_metadata.h"
#include "convert/importance.h"
#include "formats/atomic_file.h"
#include "formats/blocks.h"
#include "formats/gguf_writer.h"
#include "formats/hf_model_dir.h"
#include "formats/mapped_file.h"
#include "formats/safetensors_writer.h"
#include "tokenizer/hf_tokenizer.h"

namespace qe::convert {
namespace {

namespace fs = std::filesystem;
using Sink = std::function<Status(std::span<const std::byte>)>;

// Elements of f32 working data per chunk: big enough that a parallel region per chunk costs nothing,
// small enough that the chunk's input and output stay in L2/L3 on their way to the writer.
constexpr uint64_t kChunkElements = uint64_t{1} << 20;
constexpr uint64_t kCopyChunkBytes = uint64_t{16} << 20;

// Points each plan with ConvertJob::prequantized bytes at them: they must be exactly the tensor's output
// size, from an f32 source (the calibrator's working copy), for a type that is not a copy.
Status attach_prequantized(const ConvertJob& job, std::vector<TensorPlan>& plans) {
  if (!job.prequantized) return {};
  for (TensorPlan& p : plans) {
    auto it = job.prequantized->find(p.name);
    if (it == job.prequantized->end()) continue;
    if (p.src_type != GgmlType::F32 || !p.computed.empty() || it->second.size() != p.out_bytes() ||
        block_traits(p.out_type) == nullptr)
      return Error{job.input, p.name, "prepared output bytes do not fit the tensor", "prequantized"};
    p.prequantized = std::span<const std::byte>(it->second);
    p.copy = false;
  }
  return {};
}

Status stream_tensor(const TensorPlan& p, int n_threads, const Sink& sink, TensorReport& rep,
                     const std::function<void(uint64_t)>& advance) {
  rep.name = p.name;
  rep.dims = p.dims;
  rep.src_type = p.computed.empty() ? p.src_type : GgmlType::F32;
  rep.out_type = p.out_type;
  rep.src_bytes = p.src_bytes();
  rep.out_bytes = p.out_bytes();
  rep.n_elements = p.n_elements();
  rep.reason = p.reason;
  rep.fallback = p.fallback;
  rep.override_index = p.override_index;
  rep.copied = p.copy;
  rep.weighted = !p.copy && takes_importance(p.out_type) && !p.importance.empty();

  if (!p.prequantized.empty()) {
    // Written as made; the report's error is still measured against the source rows (f32, checked).
    const RowCodec codec(p.out_type);
    const auto row_len = static_cast<int64_t>(p.dims[0]);
    const size_t out_row = static_cast<size_t>(ggml_row_bytes(p.out_type, p.dims[0]));
    std::vector<float> y(static_cast<size_t>(row_len));
    ErrorStats stats;
    const auto* x = reinterpret_cast<const float*>(p.src.data());
    for (uint64_t r = 0; r < p.n_elements() / p.dims[0]; ++r) {
      codec.to_f32(p.prequantized.data() + r * out_row, y.data(), row_len);
      const kernels::RowError e = kernels::kernels().error_stats(x + r * p.dims[0], y.data(), row_len);
      stats.sum_sq += e.sum_sq;
      stats.max_abs = std::max(stats.max_abs, static_cast<double>(e.max_abs));
      stats.n += static_cast<uint64_t>(row_len);
    }
    for (uint64_t off = 0; off < p.prequantized.size(); off += kCopyChunkBytes) {
      const uint64_t n = std::min<uint64_t>(kCopyChunkBytes, p.prequantized.size() - off);
      if (Status s = sink(p.prequantized.subspan(off, n)); !s) return s;
    }
    advance(p.src.size());
    release_mapped_pages(p.src);
    rep.rmse = stats.rmse();
    rep.max_abs_error = stats.max_abs;
    return {};
  }

  if (p.copy) {
    for (uint64_t off = 0; off < p.src.size(); off += kCopyChunkBytes) {
      const uint64_t n = std::min<uint64_t>(kCopyChunkBytes, p.src.size() - off);
      if (Status s = sink(p.src.subspan(off, n)); !s) return s;
      advance(n);
    }
    release_mapped_pages(p.src);  // resident memory stays at one tensor, not the whole input
    return {};
  }

  std::span<const std::byte> src = p.src;
  GgmlType src_type = p.src_type;
  if (!p.computed.empty()) {
    src = std::as_bytes(std::span<const float>(p.computed));
    src_type = GgmlType::F32;
  }
  const auto row_len = static_cast<int64_t>(p.dims[0]);
  const int64_t rows = static_cast<int64_t>(p.n_elements()) / row_len;
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkElements) / row_len);
  const uint64_t src_row_bytes = ggml_row_bytes(src_type, p.dims[0]);
  const uint64_t out_row_bytes = ggml_row_bytes(p.out_type, p.dims[0]);
  // Two output buffers: chunk k is written while chunk k + 1 is converted (by one thread of the converting
  // team, convert_rows' side task), so the cores never wait for the disk and the disk never waits for
  // the cores.
  const auto buf_bytes = static_cast<size_t>(out_row_bytes * static_cast<uint64_t>(std::min(chunk, rows)));
  std::vector<std::byte> out[2] = {std::vector<std::byte>(buf_bytes), std::vector<std::byte>(buf_bytes)};
  ErrorStats stats;
  std::span<const std::byte> pending;  // the converted chunk not yet written
  int64_t pending_rows = 0;
  Status written;
  auto write_pending = [&] {
    written = sink(pending);
    if (written) advance(src_row_bytes * static_cast<uint64_t>(pending_rows));
  };
  for (int64_t r0 = 0, k = 0; r0 < rows; r0 += chunk, ++k) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    std::vector<std::byte>& buf = out[k & 1];
    convert_rows(src_type, src.data(), p.out_type, buf.data(), row_len, r0, r1, p.order, n_threads, stats,
                 pending.empty() ? std::function<void()>{} : std::function<void()>(write_pending), p.importance);
    if (!written) return written;
    pending = std::span<const std::byte>(buf.data(), static_cast<size_t>(out_row_bytes) * (r1 - r0));
    pending_rows = r1 - r0;
  }
  write_pending();
  if (!written) return written;
  if (p.computed.empty()) release_mapped_pages(p.src);
  rep.rmse = stats.rmse();
  rep.max_abs_error = stats.max_abs;
  rep.unweighted_rows = stats.unweighted_rows;
  return {};
}

// A stop request is honoured between tensors and before each chunk is written (the sink may run on a
// worker thread of the converting team: stop_requested must be thread-safe); the error goes out through
// the writers' ordinary error path, which removes their temporary files.
Status stream_all(const std::vector<TensorPlan>& plans, int n_threads, const std::function<Sink(const TensorPlan&)>& sink_for,
                  const ConvertObserver& obs, const std::string& output, ConvertResult& res) {
  auto stopped = [&] { return obs.stop_requested && obs.stop_requested(); };
  uint64_t total = 0, done = 0;
  for (const TensorPlan& p : plans) total += p.src_bytes();
  for (size_t i = 0; i < plans.size(); ++i) {
    if (stopped()) return interrupted_error(output);
    if (obs.tensor) obs.tensor(plans[i], i, plans.size());
    TensorReport rep;
    Sink sink = [&, inner = sink_for(plans[i])](std::span<const std::byte> b) -> Status {
      if (stopped()) return interrupted_error(output);
      return inner(b);
    };
    Status s = stream_tensor(plans[i], n_threads, sink, rep, [&](uint64_t n) {
      done += n;
      if (obs.progress) obs.progress(done, total);
    });
    if (!s) return s;
    res.src_bytes += rep.src_bytes;
    res.out_bytes += rep.out_bytes;
    res.n_weights += rep.n_elements;
    if (rep.unweighted_rows > 0)
      res.warnings.push_back(fmt::format(
          "{}: {} rows rounded without importances: the imatrix gives a whole block zero weight, which makes "
          "ggml's {} scale NaN (llama-quantize refuses such a file)",
          rep.name, rep.unweighted_rows, ggml_type_name(rep.out_type)));
    res.tensors.push_back(std::move(rep));
  }
  return {};
}

// Same file by inode when both exist, else by canonical path (an output that does not exist yet).
bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  std::error_code e1, e2;
  const fs::path ca = fs::weakly_canonical(a, e1), cb = fs::weakly_canonical(b, e2);
  return !e1 && !e2 && ca == cb;
}

Status refuse_input_as_output(const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  for (const std::string& out : outputs)
    for (const std::string& in : inputs)
      if (same_file(out, in)) return Error{out, "", fmt::format("is an input file ({}); refusing to overwrite it", in)};
  return {};
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) out.push_back(e.path().string());
  return out;
}

std::string dir_basename(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return (ec ? p : c).filename().string();
}

uint64_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  const uint64_t n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

constexpr std::string_view kHfReadme = "README.md";  // the model card

Status write_text_file(const std::string& path, const std::string& text, bool overwrite) {
  Result<AtomicFile> f = AtomicFile::create(path, overwrite);
  if (!f) return f.error();
  if (Status s = f->write(text.data(), text.size()); !s) return s;
  return f->commit();
}

Status write_json_file(const std::string& path, const nlohmann::ordered_json& j, bool overwrite) {
  return write_text_file(path, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", overwrite);
}

// What the card shows: the GGUF side's keys, less the tokenizer's (its vocabulary is most of the bytes).
void describe(ConvertResult& res, const std::vector<GgufKv>& kvs) {
  res.metadata.clear();
  for (const GgufKv& kv : kvs)
    if (kv.key.rfind("tokenizer.", 0) != 0) res.metadata.push_back(kv);
  res.model_name.clear();
  res.license.clear();
  for (const GgufKv& kv : kvs) {
    if (const std::string* v = kv.value.get<std::string>(); v && kv.key == "general.name") res.model_name = *v;
    if (const std::string* v = kv.value.get<std::string>(); v && kv.key == "general.license") res.license = *v;
  }
}

Status write_gguf(const ConvertJob& job, const std::vector<GgufKv>& kvs, const std::vector<TensorPlan>& plans,
                  const ConvertObserver& obs, ConvertResult& res) {
  GgufWriter w;
  for (const GgufKv& kv : kvs)
    if (Status s = w.set(kv.key, kv.value); !s) return s;
  for (const TensorPlan& p : plans)
    if (Status s = w.add_tensor(p.name, p.out_type, p.dims); !s) return s;
  if (Status s = w.open(job.output, job.overwrite); !s) return s;
  Status s = stream_all(plans, job.n_threads,
                        [&](const TensorPlan& p) -> Sink {
                          return [&w, &p](std::span<const std::byte> b) { return w.write_tensor_chunk(p.name, b); };
                        },
                        obs, job.output, res);
  if (!s) return s;
  if (Status f = w.finish(); !f) return f;
  res.files_written.push_back(job.output);
  res.output_file_bytes = file_size_or_zero(job.output);
  return {};
}

Result<ConvertResult> hf_to_gguf(const ConvertJob& job, const ImportanceSet& imp, const ConvertObserver& obs) {
  ConvertResult res;
  res.mode = ConvertMode::kHfToGguf;
  Result<HfModelDir> dir = HfModelDir::open(job.input);
  if (!dir) return dir.error();
  const std::string config_path = job.input + "/" + std::string(kHfConfigFile);
  if (!dir->config()) return Error{config_path, "", "missing (a Hugging Face model directory needs config.json)"};
  Result<LlamaHparams> hp = hparams_from_hf_config(*dir->config(), config_path);
  if (!hp) return hp.error();
  Result<std::vector<TensorPlan>> plans = plan_hf_to_gguf(*dir, *hp, job.policy);
  if (!plans) return plans.error();
  if (Status s = attach_importance(job, imp, *plans); !s) return s.error();
  if (Status s = attach_prequantized(job, *plans); !s) return s.error();
  Result<std::vector<GgufKv>> tok = tokenizer::hf_tokenizer_to_gguf(job.input, res.warnings);
  if (!tok) return tok.error();

  // general.*: the model card's front matter (what an export of ours wrote, or HF's keys), the folder's
  // name when it names nothing, config.json's licence when the card has none.
  Result<std::vector<GgufKv>> general = general_kvs_from_hf_dir(job.input, res.warnings);
  if (!general) return general.error();
  auto has = [&](std::string_view key) {
    return std::any_of(general->begin(), general->end(), [&](const GgufKv& kv) { return kv.key == key; });
  };
  if (!has("general.name")) general->insert(general->begin(), {"general.name", GgufValue::str(dir_basename(job.input))});
  if (auto it = dir->config()->find("license"); !has("general.license") && it != dir->config()->end() && it->is_string())
    general->push_back({"general.license", GgufValue::str(it->get<std::string>())});

  // Metadata in convert_hf_to_gguf.py's order: general.*, llama.*, file type, tokenizer, quantization version.
  std::vector<GgufKv> hparam_kvs = llama_gguf_kvs(*hp);
  std::vector<GgufKv> kvs = {hparam_kvs[0], {"general.type", GgufValue::str("model")}};
  kvs.insert(kvs.end(), general->begin(), general->end());
  kvs.insert(kvs.end(), hparam_kvs.begin() + 1, hparam_kvs.end());
  kvs.push_back({"general.file_type", GgufValue::u32(job.policy.effective_file_type().id)});
  for (GgufKv& kv : *tok) {
    if (kv.key == "tokenizer.ggml.tokens")
      if (const auto* a = kv.value.get<GgufArray>(); a && a->size() != static_cast<uint64_t>(hp->vocab_size))
        res.warnings.push_back(fmt::format("the tokenizer has {} tokens, config.json vocab_size is {}", a->size(),
                                           hp->vocab_size));
    kvs.push_back(std::move(kv));
  }
  kvs.push_back({"general.quantization_version", GgufValue::u32(2)});
  set_metadata(kvs, job.kv_overrides);
  set_metadata(kvs, imp.metadata);
  set_metadata(kvs, job.extra_metadata);
  describe(res, kvs);
  if (Status s = write_gguf(job, kvs, *plans, obs, res); !s) return s.error();
  return res;
}

Result<ConvertResult> requantize(const ConvertJob& job, const GgufFile& g, const ImportanceSet& imp,
                                 const ConvertObserver& obs) {
  ConvertResult res;
  res.mode = ConvertMode::kRequantize;
  Result<std::vector<TensorPlan>> plans = plan_requantize(g, job.policy, job.allow_requantize);
  if (!plans) return plans.error();
  if (Status s = attach_importance(job, imp, *plans); !s) return s.error();
  if (Status s = attach_prequantized(job, *plans); !s) return s.error();
  // llama-quantize's file, key for key and tensor for tensor: the input's keys, then it sets
  // general.quantization_version and general.file_type (ggml's gguf_set_val removes a key and appends
  // it), then its overrides (an imatrix's keys); the tensors in its loader's order.
  std::vector<GgufKv> kvs;
  for (const GgufKv& kv : g.metadata())
    if (kv.key != "general.file_type" && kv.key != "general.quantization_version") kvs.push_back(kv);
  kvs.push_back({"general.quantization_version", GgufValue::u32(2)});
  kvs.push_back({"general.file_type", GgufValue::u32(job.policy.effective_file_type().id)});
  std::stable_sort(plans->begin(), plans->end(),
                   [](const TensorPlan& a, const TensorPlan& b) { return llama_loader_before(a.name, b.name); });
  set_metadata(kvs, job.kv_overrides);
  set_metadata(kvs, imp.metadata);
  set_metadata(kvs, job.extra_metadata);
  describe(res, kvs);
  if (Status s = write_gguf(job, kvs, *plans, obs, res); !s) return s.error();
  return res;
}

std::string torch_dtype(GgmlType t) {
  return t == GgmlType::BF16 ? "bfloat16" : t == GgmlType::F16 ? "float16" : "float32";
}

// Creates (or checks) the export directory; the committed files are removed again if a later step fails,
// so an error leaves the directory as it was.
class ExportDir {
 public:
  ~ExportDir() {
    if (done_) return;
    std::error_code ec;
    for (const std::string& f : committed_) fs::remove(f, ec);
    if (created_) fs::remove(dir_, ec);
  }
  Status open(const std::string& dir, bool overwrite) {
    dir_ = dir;
    std::error_code ec;
    if (fs::exists(dir, ec)) {
      if (!fs::is_directory(dir, ec)) return Error{dir, "", "exists and is not a directory"};
      if (!fs::is_empty(dir, ec) && !overwrite) return Error{dir, "", "exists and is not empty", "overwrite"};
      return {};
    }
    if (!fs::create_directory(dir, ec)) return Error{dir, "", "cannot create directory: " + ec.message()};
    created_ = true;
    return {};
  }
  std::string path(std::string_view name) const { return dir_ + "/" + std::string(name); }
  void committed(std::string f) { committed_.push_back(std::move(f)); }
  void keep() { done_ = true; }
  const std::vector<std::string>& files() const { return committed_; }

 private:
  std::string dir_;
  bool created_ = false, done_ = false;
  std::vector<std::string> committed_;
};

Result<ConvertResult> gguf_to_hf(const ConvertJob& job, const GgufFile& g, const ConvertObserver& obs) {
  ConvertResult res;
  res.mode = ConvertMode::kGgufToHf;
  Result<LlamaHparams> hp = hparams_from_gguf(g);
  if (!hp) return hp.error();
  Result<std::vector<TensorPlan>> plans = plan_gguf_to_hf(g, *hp, job.export_type, res.warnings);
  if (!plans) return plans.error();
  Result<tokenizer::HfTokenizerFiles> tok = tokenizer::gguf_tokenizer_to_hf(g);
  if (!tok) return tok.error();
  describe(res, g.metadata());
  // README.md's front matter carries the general.* keys (HF's card keys plus all of them exactly); made
  // before anything is written, so a key without a spelling warns in the result.
  const std::string front_matter = hf_front_matter(carried_general_kvs(g.metadata()), res.warnings);

  ExportDir dir;
  if (Status s = dir.open(job.output, job.overwrite); !s) return s.error();
  const std::string st_path = dir.path(kHfSingleFile);
  std::vector<SafetensorsDecl> decls;
  for (const TensorPlan& p : *plans)
    decls.push_back({p.name, std::string(ggml_type_name(p.out_type)), std::vector<uint64_t>(p.dims.rbegin(), p.dims.rend())});
  for (SafetensorsDecl& d : decls)
    std::transform(d.dtype.begin(), d.dtype.end(), d.dtype.begin(), [](unsigned char c) { return std::toupper(c); });
  Result<SafetensorsWriter> st = SafetensorsWriter::create(st_path, decls, {{"format", "pt"}}, job.overwrite);
  if (!st) return st.error();
  Status s = stream_all(*plans, job.n_threads,
                        [&](const TensorPlan&) -> Sink { return [&st](std::span<const std::byte> b) { return st->write(b); }; },
                        obs, job.output, res);
  if (!s) return s.error();
  if (Status c = st->commit(); !c) return c.error();
  dir.committed(st_path);
  res.output_file_bytes = file_size_or_zero(st_path);

  nlohmann::ordered_json gen;
  gen["_from_model_config"] = true;
  if (hp->bos_token_id) gen["bos_token_id"] = *hp->bos_token_id;
  if (hp->eos_token_id) gen["eos_token_id"] = *hp->eos_token_id;
  const std::pair<std::string_view, const nlohmann::ordered_json*> files[] = {
      {kHfConfigFile, nullptr},  // built below: needs hp after rope scaling was recovered
      {"generation_config.json", &gen},
      {"tokenizer.json", &tok->tokenizer_json},
      {"tokenizer_config.json", &tok->tokenizer_config_json},
  };
  const nlohmann::ordered_json config = hf_config_json(*hp, torch_dtype(job.export_type));
  for (auto [name, json] : files) {
    const std::string path = dir.path(name);
    if (Status w = write_json_file(path, json ? *json : config, job.overwrite); !w) return w.error();
    dir.committed(path);
    res.output_file_bytes += file_size_or_zero(path);
  }
  const std::string readme = dir.path(kHfReadme);
  const std::string body = job.hf_readme_body
                               ? job.hf_readme_body(res)
                               : fmt::format("# {}\n\nConverted from GGUF by qconvert.\n",
                                             res.model_name.empty() ? dir_basename(job.output) : res.model_name);
  if (Status w = write_text_file(readme, front_matter + body, job.overwrite); !w) return w.error();
  dir.committed(readme);
  res.output_file_bytes += file_size_or_zero(readme);
  res.files_written = dir.files();
  dir.keep();
  return res;
}

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

Error interrupted_error(const std::string& output) {
  return Error{output, "", "interrupted; nothing was written", "interrupted"};
}

bool is_interrupted(const Error& e) { return e.option == "interrupted"; }

Result<ConvertMode> detect_mode(const ConvertJob& job) {
  std::error_code ec;
  if (!fs::exists(job.input, ec)) return Error{job.input, "", "no such file or directory"};
  if (fs::is_directory(job.input, ec)) {
    if (job.to_hf) return Error{job.input, "to_hf", "needs a GGUF file as input, not a directory", "to_hf"};
    return ConvertMode::kHfToGguf;
  }
  if (!starts_with_gguf_magic(job.input))
    return Error{job.input, "", "is neither a Hugging Face model directory nor a GGUF file (no GGUF magic)"};
  return job.to_hf ? ConvertMode::kGgufToHf : ConvertMode::kRequantize;
}

Result<ConvertResult> run_convert(const ConvertJob& job, const ConvertObserver& obs) {
  if (job.awq) return run_awq_convert(job, obs);
  const auto t0 = std::chrono::steady_clock::now();
  Result<ConvertMode> mode = detect_mode(job);
  if (!mode) return mode.error();

  std::vector<std::string> inputs = *mode == ConvertMode::kHfToGguf ? files_in(job.input)
                                                                     : std::vector<std::string>{job.input};
  if (!job.imatrix.empty()) inputs.push_back(job.imatrix);
  if (*mode == ConvertMode::kGgufToHf &&
      (!job.imatrix.empty() || job.importance || !job.extra_metadata.empty() || !job.kv_overrides.empty()))
    return Error{job.output, "", "importance weights and metadata apply to GGUF outputs, not to an HF export", "to_hf"};
  std::vector<std::string> outputs = job.extra_outputs;
  if (*mode == ConvertMode::kGgufToHf) {
    for (std::string_view f : {kHfSingleFile, kHfConfigFile, std::string_view("generation_config.json"),
                               std::string_view("tokenizer.json"), std::string_view("tokenizer_config.json"), kHfReadme})
      outputs.push_back(job.output + "/" + std::string(f));
  } else {
    outputs.push_back(job.output);
  }
  if (Status s = refuse_input_as_output(inputs, outputs); !s) return s.error();
  if (*mode != ConvertMode::kGgufToHf && !job.overwrite && fs::exists(job.output))
    return Error{job.output, "", "already exists", "overwrite"};  // fail fast; the writer checks again

  // Read before the input, so that a bad importance matrix fails before anything is written.
  Result<ImportanceSet> imp = load_importance(job);
  if (!imp) return imp.error();
  Result<ConvertResult> res = Error{};
  if (*mode == ConvertMode::kHfToGguf) {
    res = hf_to_gguf(job, *imp, obs);
  } else {
    Result<GgufFile> g = GgufFile::open(job.input);
    if (!g) return g.error();
    res = *mode == ConvertMode::kRequantize ? requantize(job, *g, *imp, obs) : gguf_to_hf(job, *g, obs);
  }
  if (!res) return res;
  res->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace qe::convert
