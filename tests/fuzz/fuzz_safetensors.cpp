// libFuzzer target: SafetensorsFile::parse on arbitrary bytes must return a value or an Error, never
// crash, hang, read out of bounds or throw. On success every tensor span is read in full.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "formats/safetensors.h"
#include "formats/safetensors_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto file = qe::SafetensorsFile::parse(bytes, "fuzz.safetensors");
  if (!file) {
    (void)file.error().message();
  } else {
    uint64_t sum = 0;
    for (const qe::SafetensorsTensor& t : file->tensors()) {
      for (std::byte b : t.data) sum += static_cast<uint8_t>(b);
      auto v = file->float_tensor(t.name);
      if (!v) (void)v.error().message();
    }
    auto j = qe::safetensors_to_json(*file, /*with_hash=*/true);
    sum += j.dump().size();
    volatile uint64_t sink = sum;
    (void)sink;
  }
  // The strict JSON parser on its own, whatever the length prefix says.
  if (size > 8) {
    std::string_view text(reinterpret_cast<const char*>(data) + 8, size - 8);
    auto j = qe::parse_json_strict(text, "fuzz.json", "", 64);
    if (!j) (void)j.error().message();
  }
  return 0;
}
