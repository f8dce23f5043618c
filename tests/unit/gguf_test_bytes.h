// Byte builder for hand-crafted GGUF files in the reader tests: every corrupt file is a good file
// with one thing changed, so each test names exactly one failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace qe::test {

class Bytes {
 public:
  template <class T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    b.insert(b.end(), p, p + s.size());
    return *this;
  }
  Bytes& raw(const Bytes& o) {
    b.insert(b.end(), o.b.begin(), o.b.end());
    return *this;
  }
  Bytes& zeros(uint64_t n) {
    b.insert(b.end(), n, std::byte{0});
    return *this;
  }
  Bytes& pad_to(uint64_t alignment) { return zeros((alignment - b.size() % alignment) % alignment); }
  uint64_t size() const { return b.size(); }

  std::vector<std::byte> b;
};

// GGUF value type ids, spelled out here rather than taken from the code under test.
enum : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kStr = 8,
  kArr = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12
};

inline Bytes kv_u32(std::string_view key, uint32_t v) {
  return Bytes().str(key).u32(kU32).u32(v);
}
inline Bytes kv_str(std::string_view key, std::string_view v) {
  return Bytes().str(key).u32(kStr).str(v);
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;  // f32
  uint64_t offset = 0;
  uint32_t n_dims = 0xffffffff;  // default: dims.size()
};

inline Bytes tensor_info(const TensorSpec& t) {
  Bytes out;
  out.str(t.name).u32(t.n_dims == 0xffffffff ? static_cast<uint32_t>(t.dims.size()) : t.n_dims);
  for (uint64_t d : t.dims) out.u64(d);
  return out.u32(t.type).u64(t.offset);
}

// A whole file: header, the given encoded KVs, tensor infos, padding, then `data_bytes` of data
// (a pattern, so each tensor's bytes differ).
inline Bytes gguf_file(const std::vector<Bytes>& kvs, const std::vector<TensorSpec>& tensors,
                       uint64_t data_bytes, uint32_t version = 3, uint64_t alignment = 32) {
  Bytes f;
  f.b = {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}};
  f.u32(version).u64(tensors.size()).u64(kvs.size());
  for (const Bytes& kv : kvs) f.raw(kv);
  for (const TensorSpec& t : tensors) f.raw(tensor_info(t));
  f.pad_to(alignment);
  for (uint64_t i = 0; i < data_bytes; ++i) f.u8(static_cast<uint8_t>(i * 7 + 1));
  return f;
}

}  // namespace qe::test
