#include "formats/xxh3.h"

#include <fmt/core.h>
#include <xxhash.h>

namespace qe {

std::string xxh3_hex(std::span<const std::byte> bytes) {
  return fmt::format("{:016x}", static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
}

}  // namespace qe
