// XXH3-64 of tensor bytes, as 16 lowercase hex digits (= Python's xxhash.xxh3_64(b).hexdigest()):
// the per-tensor fingerprint of --info --hash and the conversion round-trip checks.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace qe {

std::string xxh3_hex(std::span<const std::byte> bytes);

}  // namespace qe
