// quant_tool: raw f32 <-> ggml blocks through the reference quantizers, for the Python bit-exactness tests.
//   quant_tool quantize   TYPE IN.f32 OUT.bin   (IN: little-endian f32, count a multiple of the block size)
//   quant_tool dequantize TYPE IN.bin OUT.f32
// TYPE is a ggml type name with block traits (f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 q2_K..q6_K iq4_nl
// iq4_xs; q8_K too, the activation type).
// Bad input: one line on stderr, exit 1.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "formats/ggml_type.h"

namespace {

struct Codec {
  qe::GgmlType type;
  void (*from_float)(const float*, void*, int64_t);
  void (*to_float)(const void*, float*, int64_t);
};

// q8_K is not in the traits table (never stored in files), but the kernels rely on it, so it is
// checked here too.
void q8k_from_float(const float* x, void* y, int64_t n) {
  qe::quantize_row_q8_K_ref(x, static_cast<qe::BlockQ8_K*>(y), n);
}
void q8k_to_float(const void* x, float* y, int64_t n) {
  qe::dequantize_row_q8_K(static_cast<const qe::BlockQ8_K*>(x), y, n);
}

std::optional<Codec> find_codec(const std::string& name) {
  auto type = qe::ggml_type_from_name(name);
  if (!type) return std::nullopt;
  if (*type == qe::GgmlType::Q8_K) return Codec{*type, q8k_from_float, q8k_to_float};
  const qe::BlockTraits* t = qe::block_traits(*type);
  if (!t) return std::nullopt;
  return Codec{*type, t->from_float, t->to_float};
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "quant_tool: %s\n", msg.c_str());
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

bool write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return false;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return static_cast<bool>(out.flush());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return fail("usage: quant_tool quantize|dequantize TYPE IN OUT");
  const std::string mode = argv[1], type_name = argv[2], in_path = argv[3], out_path = argv[4];
  if (mode != "quantize" && mode != "dequantize") return fail("unknown mode '" + mode + "'");
  const auto codec = find_codec(type_name);
  if (!codec) return fail("unsupported type '" + type_name + "'");
  const qe::GgmlTypeInfo info = qe::ggml_type_info(codec->type);

  std::vector<char> in;
  if (!read_file(in_path, in)) return fail(in_path + ": cannot read (missing, or not a regular file)");
  const uint64_t bytes = in.size();

  if (mode == "quantize") {
    if (!codec->from_float) return fail("type '" + type_name + "' can be read but not written");
    if (bytes % sizeof(float) != 0)
      return fail(in_path + ": size " + std::to_string(bytes) + " is not a multiple of 4");
    const uint64_t n = bytes / sizeof(float);
    if (n % info.block_size != 0)
      return fail(in_path + ": " + std::to_string(n) + " values is not a multiple of the block size " +
                  std::to_string(info.block_size));
    std::vector<float> x(n);
    if (n) std::memcpy(x.data(), in.data(), bytes);
    std::vector<unsigned char> y(n / info.block_size * info.type_size);
    codec->from_float(x.data(), y.data(), static_cast<int64_t>(n));
    if (!write_file(out_path, y.data(), y.size())) return fail(out_path + ": cannot write");
  } else {
    if (bytes % info.type_size != 0)
      return fail(in_path + ": size " + std::to_string(bytes) + " is not a multiple of the block bytes " +
                  std::to_string(info.type_size));
    const uint64_t n = bytes / info.type_size * info.block_size;
    // Copy into an 8-byte aligned buffer: the block structs must not be read through a char* of any
    // alignment.
    std::vector<uint64_t> aligned((bytes + 7) / 8);
    if (bytes) std::memcpy(aligned.data(), in.data(), bytes);
    std::vector<float> y(n);
    codec->to_float(aligned.data(), y.data(), static_cast<int64_t>(n));
    if (!write_file(out_path, y.data(), y.size() * sizeof(float))) return fail(out_path + ": cannot write");
  }
  return 0;
}
