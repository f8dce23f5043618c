// One unit convention across the tools: sizes in binary units (B, KiB, MiB, GiB, as llama.cpp prints
// them), rates in decimal MB/s (as disks and llama-bench's peers quote them).
#pragma once

#include <cstdint>
#include <string>

namespace qe::cli {

std::string bytes_text(uint64_t n);                           // "92.1 MiB", "1.25 GiB"
std::string rate_text(uint64_t bytes, double seconds);        // "113 MB/s"
// How the output's size compares with the source's: "3.57x smaller", "5.57x larger", "same size".
std::string size_change_text(uint64_t source, uint64_t output);

}  // namespace qe::cli
