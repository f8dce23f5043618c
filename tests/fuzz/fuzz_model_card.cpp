// libFuzzer target: a model card's YAML front matter as qconvert reads it from an HF directory's README.md
// (convert/general_metadata: yaml-cpp, then our `gguf:` block or HF's card keys). Whatever it accepts,
// written back as an export's front matter (hf_front_matter) and read again, must give the same text: the
// GGUF -> HF -> GGUF round trip is a fixpoint after one pass. Seeds: tests/fuzz/corpus/model_card (our
// export of SmolLM2, typed values, Hub cards).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "convert/general_metadata.h"
#include "fuzz_common.h"

namespace {

// The YAML between the "---" lines of a front matter hf_front_matter wrote.
std::string body_of(const std::string& front_matter) {
  const size_t start = front_matter.find('\n') + 1;
  const size_t end = front_matter.rfind("---\n");
  return front_matter.substr(start, end - start);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> warnings;
  qe::Result<std::vector<qe::GgufKv>> kvs =
      qe::convert::general_kvs_from_front_matter(std::string(qe::fuzz::as_text(data, size)), "README.md", warnings);
  if (!kvs) {
    qe::fuzz::sink(kvs.error().message().size());
    return 0;
  }
  const std::string once = qe::convert::hf_front_matter(*kvs, warnings);
  qe::Result<std::vector<qe::GgufKv>> again =
      qe::convert::general_kvs_from_front_matter(body_of(once), "written README.md", warnings);
  if (!again) {
    // Two keys that differ only in invalid UTF-8 are one key once written (as U+FFFD): the only way a
    // written block may fail to read back.
    if (once.find("\xEF\xBF\xBD") == std::string::npos) {
      std::fprintf(stderr, "fuzz_model_card: %s\n%s", again.error().message().c_str(), once.c_str());
      QE_CHECK(again.ok());
    }
    return 0;
  }
  const std::string twice = qe::convert::hf_front_matter(*again, warnings);
  if (once != twice) std::fprintf(stderr, "fuzz_model_card: not a fixpoint\n%s---- read back as\n%s", once.c_str(), twice.c_str());
  QE_CHECK(once == twice);
  qe::fuzz::sink(once.size() + warnings.size());
  return 0;
}
