// libFuzzer target for the GGUF reader: any bytes must parse or fail with an Error, never crash,
// leak or read out of bounds. On success every tensor span and metadata value is touched, and the
// JSON view is built, so a bad span or a malformed value is caught by ASan here, not in qrun.
// Seeds: tests/fuzz/corpus/gguf (tests/fuzz/make_gguf_corpus.py).
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/gguf_json.h"
#include "formats/gguf_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  qe::Result<qe::GgufFile> f = qe::GgufFile::parse(bytes, "fuzz.gguf");
  if (!f) {
    volatile size_t n = f.error().message().size();
    (void)n;
    return 0;
  }
  uint64_t sum = 0;
  for (const qe::GgufTensorInfo& t : f->tensors()) {
    QE_CHECK(t.data.size() == t.n_bytes);
    QE_CHECK(t.data.data() >= bytes.data() && t.data.data() + t.data.size() <= bytes.data() + bytes.size());
    QE_CHECK(f->find_tensor(t.name) == &t);
    for (std::byte b : t.data) sum += static_cast<uint8_t>(b);
  }
  for (const qe::GgufKv& kv : f->metadata()) {
    QE_CHECK(f->find(kv.key) == &kv.value);
    sum += kv.value.type_name().size();
  }
  // gguf_value_to_json visits every value, nested arrays included; dumping exercises the strings.
  sum += qe::gguf_to_json(*f, /*with_hash=*/true)
             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
             .size();
  volatile uint64_t sink = sum;
  (void)sink;
  return 0;
}
