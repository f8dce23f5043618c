// What the loader tolerates but reports: a special-token id outside the vocabulary keeps llama.cpp's
// default (llama_vocab::impl::load does the same, with a warning) and becomes exactly one line in
// Model::warnings / load_vocab's warnings, naming the file and the key; qrun prints them
// (tests/python/test_qrun_bad_input.py checks its stderr).
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"
#include "model/model.h"
#include "tiny_model.h"
#include "tokenizer/vocab.h"

namespace qe {
namespace {

std::string tmp_path(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/loader_warnings_" + name + "_" + std::to_string(::getpid()) +
         ".gguf";
}

TEST(LoaderWarnings, SpecialIdOutsideTheVocabularyIsOneWarning) {
  const std::string path = tmp_path("eos");
  testing::TinySpec spec;
  spec.eos = 1000000;
  testing::write_tiny_model(path, spec);
  Result<std::unique_ptr<model::Model>> m = model::open_model(path, {.n_threads = 1});
  ::unlink(path.c_str());
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ((*m)->warnings,
            std::vector<std::string>{path + ": tokenizer.ggml.eos_token_id = 1000000 is outside the "
                                            "vocabulary (256 tokens); using the default 11"});
  EXPECT_EQ((*m)->tok.eos(), 11);  // GPT-2's, llama.cpp's default for a BPE vocabulary
}

TEST(LoaderWarnings, GoodModelHasNone) {
  const std::string path = tmp_path("good");
  testing::write_tiny_model(path, {});
  Result<std::unique_ptr<model::Model>> m = model::open_model(path, {.n_threads = 1});
  ::unlink(path.c_str());
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_TRUE((*m)->warnings.empty());
}

TEST(LoaderWarnings, NegativeIdWithoutDefaultIsLeftUnset) {
  const std::string path = tmp_path("eot");
  GgufWriter w;
  ASSERT_TRUE(w.set("tokenizer.ggml.model", GgufValue::str("llama")).ok());
  ASSERT_TRUE(
      w.set("tokenizer.ggml.tokens", GgufValue::array(std::vector<std::string>{"<unk>", "<s>", "</s>"}))
          .ok());
  ASSERT_TRUE(w.set("tokenizer.ggml.eot_token_id", GgufValue::i32(-1)).ok());
  ASSERT_TRUE(w.open(path, /*overwrite=*/true).ok());
  ASSERT_TRUE(w.finish().ok());
  Result<GgufFile> f = GgufFile::open(path);
  ::unlink(path.c_str());
  ASSERT_TRUE(f.ok()) << f.error().message();
  std::vector<std::string> warnings;
  Result<tokenizer::Vocab> v = tokenizer::load_vocab(*f, &warnings);
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v->eot, tokenizer::kNoToken);
  EXPECT_EQ(warnings,
            std::vector<std::string>{path + ": tokenizer.ggml.eot_token_id = -1 is outside the vocabulary "
                                            "(3 tokens); left unset"});
  // Without a warnings list the load is the same, and silent.
  EXPECT_TRUE(tokenizer::load_vocab(*f).ok());
}

}  // namespace
}  // namespace qe
