// quant_weighted_tool: raw f32 rows + an importance row -> ggml blocks through the importance-weighted
// quantizers (src/formats/blocks_weighted.h), for tests/python/test_quant_imatrix.py, which compares the
// bytes with ggml_quantize_chunk's.
//   quant_weighted_tool TYPE IN.f32 WEIGHTS.f32 OUT.bin
//   quant_weighted_tool TYPE IN.f32 -:N OUT.bin
// IN: little-endian f32, whole rows; WEIGHTS: little-endian f32, one importance per column, so its count
// is the row length (a multiple of 32). "-:N" means no importances (ggml's imatrix = NULL) with rows of
// N values. TYPE: any type with a writer in formats/blocks.h (q8_0, f16, ... ignore the importances, as ggml does).
// Bad input: one line on stderr, exit 1.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"
#include "formats/ggml_type.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "quant_weighted_tool: %s\n", msg.c_str());
  return 1;
}

bool read_file(const std::string& path, std::vector<char>& out) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

bool read_floats(const std::string& path, std::vector<float>& out, std::string& err) {
  std::vector<char> raw;
  if (!read_file(path, raw)) {
    err = path + ": cannot read (missing, or not a regular file)";
    return false;
  }
  if (raw.size() % sizeof(float) != 0) {
    err = path + ": size " + std::to_string(raw.size()) + " is not a multiple of 4";
    return false;
  }
  out.resize(raw.size() / sizeof(float));
  if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
  return true;
}

bool write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return false;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return static_cast<bool>(out.flush());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return fail("usage: quant_weighted_tool TYPE IN.f32 WEIGHTS.f32|-:N OUT.bin");
  const std::string type_name = argv[1], in_path = argv[2], w_arg = argv[3], out_path = argv[4];
  const auto type = qe::ggml_type_from_name(type_name);
  const qe::BlockTraits* traits = type ? qe::block_traits(*type) : nullptr;
  if (!traits || !traits->from_float || type == qe::GgmlType::Q8_1)
    return fail("unsupported type '" + type_name + "'");
  // A type that ignores importances (q8_0, as in ggml) quantizes with its plain reference.
  const auto quantize = [traits](const float* x, void* y, int64_t n, const float* w) {
    if (traits->from_float_weighted) traits->from_float_weighted(x, y, n, w);
    else traits->from_float(x, y, n);
  };
  const qe::GgmlTypeInfo info = qe::ggml_type_info(*type);

  std::string err;
  std::vector<float> w;
  uint64_t n_per_row = 0;
  const bool weighted = w_arg.rfind("-:", 0) != 0;
  if (weighted) {
    if (!read_floats(w_arg, w, err)) return fail(err);
    n_per_row = w.size();
  } else {
    const std::string digits = w_arg.substr(2);
    if (digits.empty() || digits.size() > 12 || digits.find_first_not_of("0123456789") != std::string::npos)
      return fail("bad row length in '" + w_arg + "'");
    n_per_row = std::stoull(digits);
  }
  if (n_per_row == 0 || n_per_row % info.block_size != 0)
    return fail("row length " + std::to_string(n_per_row) + " is not a positive multiple of " +
                std::to_string(info.block_size));

  std::vector<float> x;
  if (!read_floats(in_path, x, err)) return fail(err);
  if (x.size() % n_per_row != 0)
    return fail(in_path + ": " + std::to_string(x.size()) + " values is not whole rows of " +
                std::to_string(n_per_row));
  const uint64_t rows = x.size() / n_per_row;
  const uint64_t row_bytes = n_per_row / info.block_size * info.type_size;
  // 8-byte aligned output: the block structs are written through typed pointers.
  std::vector<uint64_t> y((rows * row_bytes + 7) / 8);
  auto* out = reinterpret_cast<unsigned char*>(y.data());
  for (uint64_t r = 0; r < rows; ++r)
    quantize(x.data() + r * n_per_row, out + r * row_bytes, static_cast<int64_t>(n_per_row),
             weighted ? w.data() : nullptr);
  if (!write_file(out_path, out, rows * row_bytes)) return fail(out_path + ": cannot write");
  return 0;
}
