// Test driver for tests/python/test_safetensors_interop.py.
//   st_tool dump PATH [--hash]   a safetensors file or an HF model directory -> safetensors_to_json on stdout
//   st_tool write OUT            a fixed file (F32, F16, BF16 tensors incl. a scalar, a 3-D and an empty
//                                one, plus __metadata__) whose values the Python test knows
// Errors: one line on stderr, exit 1.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/hf_model_dir.h"
#include "formats/safetensors.h"
#include "formats/safetensors_json.h"
#include "formats/safetensors_writer.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "st_tool: %s\n", msg.c_str());
  return 1;
}

int usage() {
  return fail("usage: st_tool dump PATH [--hash] | st_tool write OUT");
}

int dump(const std::string& path, bool hash) {
  std::error_code ec;
  nlohmann::json j;
  if (std::filesystem::is_directory(path, ec)) {
    auto dir = qe::HfModelDir::open(path);
    if (!dir) return fail(dir.error().message());
    j = qe::safetensors_to_json(*dir, hash);
  } else {
    auto file = qe::SafetensorsFile::open(path);
    if (!file) return fail(file.error().message());
    j = qe::safetensors_to_json(*file, hash);
  }
  std::puts(j.dump(1).c_str());
  return 0;
}

// Exact for the values used below (normal, 11 significant bits at most); no rounding needed.
uint16_t f16_bits(float f) {
  uint32_t b = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000);
  if ((b & 0x7fffffff) == 0) return sign;
  int exp = static_cast<int>((b >> 23) & 0xff) - 127 + 15;
  return static_cast<uint16_t>(sign | (exp << 10) | ((b >> 13) & 0x3ff));
}

// Exact for values with 8 significant bits at most.
uint16_t bf16_bits(float f) {
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16);
}

template <class T>
std::span<const std::byte> raw(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

// Keep in step with expected_tensors() in tests/python/test_safetensors_interop.py. Declared in the
// reference writer's order (dtype alignment descending: F32, BF16, F16; then by name) so the Python test
// can compare our bytes with safetensors.serialize's.
int write(const std::string& out) {
  std::vector<float> a(2 * 3), empty, scalar{3.25f};
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f - 1.0f;  // -1 .. 1.5
  std::vector<uint16_t> bf(2 * 3 * 4), h(5);
  for (size_t i = 0; i < bf.size(); ++i) bf[i] = bf16_bits(static_cast<float>(i) * 0.25f - 2.0f);
  for (size_t i = 0; i < h.size(); ++i) h[i] = f16_bits(static_cast<float>(i) * 1.5f - 3.0f);
  std::vector<qe::SafetensorsDecl> decls{
      {"a.weight", "F32", {2, 3}},          {"b.empty", "F32", {0, 4}}, {"c.scalar", "F32", {}},
      {"d.bf16.weight", "BF16", {2, 3, 4}}, {"e.f16", "F16", {5}},
  };
  qe::SafetensorsMetadata md{{"format", "pt"}, {"producer", "qe st_tool"}};
  auto w = qe::SafetensorsWriter::create(out, decls, md, /*overwrite=*/true);
  if (!w) return fail(w.error().message());
  for (const auto& [name, data] :
       std::vector<std::pair<std::string, std::span<const std::byte>>>{{"a.weight", raw(a)},
                                                                       {"b.empty", raw(empty)},
                                                                       {"c.scalar", raw(scalar)},
                                                                       {"d.bf16.weight", raw(bf)},
                                                                       {"e.f16", raw(h)}}) {
    if (qe::Status s = w->write_tensor(name, data); !s) return fail(s.error().message());
  }
  if (qe::Status s = w->commit(); !s) return fail(s.error().message());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 2 && args[0] == "dump") {
    bool hash = args.size() == 3 && args[2] == "--hash";
    if (args.size() > 3 || (args.size() == 3 && !hash)) return usage();
    return dump(args[1], hash);
  }
  if (args.size() == 2 && args[0] == "write") return write(args[1]);
  return usage();
}
