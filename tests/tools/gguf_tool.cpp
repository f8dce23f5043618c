// Test driver for the GGUF reader/writer, used by tests/python/test_gguf_interop.py:
//   gguf_tool dump FILE [--hash]       prints gguf_to_json(FILE)
//   gguf_tool write-all-types OUT      writes every value type and a tensor of each common ggml type
// The contents of write-all-types are mirrored, independently, in the Python test: change both.
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "formats/gguf_json.h"
#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"

namespace {

using qe::GgmlType;
using qe::GgufArray;
using qe::GgufValue;

int usage() {
  std::fprintf(stderr,
               "usage: gguf_tool dump FILE [--hash]\n"
               "       gguf_tool write-all-types OUT [--force]\n");
  return 2;
}

int fail(const qe::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.message().c_str());
  return 1;
}

int dump(const std::string& path, bool hash) {
  qe::Result<qe::GgufFile> f = qe::GgufFile::open(path);
  if (!f) return fail(f.error());
  const std::string text =
      qe::gguf_to_json(*f, hash).dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

void put16(std::vector<std::byte>& out, size_t at, uint16_t v) {
  out[at] = static_cast<std::byte>(v & 0xff);
  out[at + 1] = static_cast<std::byte>(v >> 8);
}

// Deterministic bytes for tensor number `t`; the fp16 scales of quantized blocks are finite.
std::vector<std::byte> tensor_bytes(const qe::GgufTensorInfo& info, uint64_t t) {
  std::vector<std::byte> out(info.n_bytes);
  const uint64_t n = info.n_elements;
  switch (info.type) {
    case GgmlType::F32:
      for (uint64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(static_cast<int64_t>((i * 7 + t) % 97) - 48) * 0.25f;
        std::memcpy(out.data() + i * 4, &v, 4);
      }
      return out;
    case GgmlType::F16:  // the mask keeps the exponent below 0x1f: finite
      for (uint64_t i = 0; i < n; ++i) put16(out, i * 2, ((i * 2311 + t * 97) & 0x7bff) | ((i & 1) << 15));
      return out;
    case GgmlType::BF16:  // the mask keeps the exponent below 0xff: finite
      for (uint64_t i = 0; i < n; ++i) put16(out, i * 2, ((i * 2311 + t * 97) & 0x7f7f) | ((i & 1) << 15));
      return out;
    default:
      break;
  }
  for (uint64_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((i * 131 + t * 17 + 7) & 0xff);
  const qe::GgmlTypeInfo ti = qe::ggml_type_info(info.type);
  for (uint64_t b = 0; b < out.size() / ti.type_size; ++b) {
    const size_t base = b * ti.type_size;
    const auto d = static_cast<uint16_t>(0x2c00 + b % 16);  // ~0.0625
    const auto m = static_cast<uint16_t>(0xb800 + b % 16);  // ~-0.5
    if (info.type == GgmlType::Q6_K) {
      put16(out, base + 208, d);
    } else {
      put16(out, base, d);
      if (info.type == GgmlType::Q4_1) put16(out, base + 2, m);
    }
  }
  return out;
}

qe::Status build_all_types(qe::GgufWriter& w) {
  using S = std::vector<std::string>;
  const std::vector<std::pair<std::string, GgufValue>> kvs = {
      {"general.architecture", GgufValue::str("test")},
      {"general.alignment", GgufValue::u32(64)},
      {"test.u8", GgufValue::u8(255)},
      {"test.i8", GgufValue::i8(-128)},
      {"test.u16", GgufValue::u16(65535)},
      {"test.i16", GgufValue::i16(-32768)},
      {"test.u32", GgufValue::u32(4294967295u)},
      {"test.i32", GgufValue::i32(std::numeric_limits<int32_t>::min())},
      {"test.f32", GgufValue::f32(0.1f)},
      {"test.f32_subnormal", GgufValue::f32(1e-40f)},
      {"test.bool_true", GgufValue::boolean(true)},
      {"test.bool_false", GgufValue::boolean(false)},
      {"test.string", GgufValue::str("hello")},
      {"test.string_empty", GgufValue::str("")},
      {"test.string_unicode",
       GgufValue::str("h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa6\x99")},
      {"test.u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())},
      {"test.i64", GgufValue::i64(std::numeric_limits<int64_t>::min())},
      {"test.f64", GgufValue::f64(2.718281828459045)},
      {"test.f64_tiny", GgufValue::f64(-2.5e-300)},
      {"test.arr_u8", GgufValue::array(std::vector<uint8_t>{0, 1, 255})},
      {"test.arr_i8", GgufValue::array(std::vector<int8_t>{-128, 0, 127})},
      {"test.arr_u16", GgufValue::array(std::vector<uint16_t>{0, 65535})},
      {"test.arr_i16", GgufValue::array(std::vector<int16_t>{-32768, 32767})},
      {"test.arr_u32", GgufValue::array(std::vector<uint32_t>{0, 4294967295u})},
      {"test.arr_i32", GgufValue::array(std::vector<int32_t>{std::numeric_limits<int32_t>::min(), 0,
                                                             std::numeric_limits<int32_t>::max()})},
      {"test.arr_f32", GgufValue::array(std::vector<float>{0.5f, -1.25f, 1e10f, 0.1f})},
      {"test.arr_bool", GgufValue::array(std::vector<bool>{true, false, true})},
      {"test.arr_string", GgufValue::array(S{"a", "", "\xc3\xbc"})},
      {"test.arr_u64", GgufValue::array(std::vector<uint64_t>{0, std::numeric_limits<uint64_t>::max()})},
      {"test.arr_i64", GgufValue::array(std::vector<int64_t>{std::numeric_limits<int64_t>::min(),
                                                             std::numeric_limits<int64_t>::max()})},
      {"test.arr_f64", GgufValue::array(std::vector<double>{0.1, -2.5e-300})},
      {"test.arr_empty_u32", GgufValue::array(GgufArray::empty(qe::GgufType::UINT32))},
      {"test.arr_empty_string", GgufValue::array(GgufArray::empty(qe::GgufType::STRING))},
      {"test.nested_ints", GgufValue::array(std::vector<GgufArray>{GgufArray(std::vector<int32_t>{1, 2, 3}),
                                                                   GgufArray(std::vector<int32_t>{4}),
                                                                   GgufArray::empty(qe::GgufType::INT32)})},
      {"test.nested_strings",
       GgufValue::array(std::vector<GgufArray>{GgufArray(S{"x", "y"}), GgufArray(S{"z"})})},
      {"test.nested_deep", GgufValue::array(std::vector<GgufArray>{GgufArray(std::vector<GgufArray>{
                               GgufArray(std::vector<GgufArray>{GgufArray(std::vector<int8_t>{1, -1})})})})},
      {"test.nested_mixed",
       GgufValue::array(std::vector<GgufArray>{GgufArray(std::vector<uint8_t>{7}), GgufArray(S{"s"})})},
      {"tokenizer.ggml.tokens", GgufValue::array(S{"<s>", "</s>", "hello"})},
      {"tokenizer.ggml.scores", GgufValue::array(std::vector<float>{0.0f, -1.5f, -2.0f})},
      {"tokenizer.ggml.token_type", GgufValue::array(std::vector<int32_t>{3, 3, 1})},
  };
  for (const auto& [k, v] : kvs)
    if (qe::Status s = w.set(k, v); !s) return s;

  const std::vector<std::tuple<std::string, GgmlType, std::vector<uint64_t>>> tensors = {
      {"t.f32", GgmlType::F32, {5, 3}},     {"t.f16", GgmlType::F16, {7, 2}},
      {"t.bf16", GgmlType::BF16, {9}},      {"t.q4_0", GgmlType::Q4_0, {64, 2}},
      {"t.q4_1", GgmlType::Q4_1, {32, 3}},  {"t.q8_0", GgmlType::Q8_0, {96}},
      {"t.q6_K", GgmlType::Q6_K, {256, 2}}, {"t.f32_4d", GgmlType::F32, {2, 3, 4, 5}},
  };
  for (const auto& [name, type, dims] : tensors)
    if (qe::Status s = w.add_tensor(name, type, dims); !s) return s;
  return {};
}

int write_all_types(const std::string& out, bool force) {
  qe::GgufWriter w;
  if (qe::Status s = build_all_types(w); !s) return fail(s.error());
  if (qe::Status s = w.open(out, force); !s) return fail(s.error());
  for (size_t t = 0; t < w.tensors().size(); ++t) {
    const qe::GgufTensorInfo& info = w.tensors()[t];
    const std::vector<std::byte> bytes = tensor_bytes(info, t);
    if (qe::Status s = w.write_tensor(info.name, bytes); !s) return fail(s.error());
  }
  if (qe::Status s = w.finish(); !s) return fail(s.error());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) return usage();
  const std::string& cmd = args[0];
  bool flag = false;
  if (args.size() == 3) {
    if (args[2] != (cmd == "dump" ? "--hash" : "--force")) return usage();
    flag = true;
  } else if (args.size() > 3) {
    return usage();
  }
  if (cmd == "dump") return dump(args[1], flag);
  if (cmd == "write-all-types") return write_all_types(args[1], flag);
  return usage();
}
