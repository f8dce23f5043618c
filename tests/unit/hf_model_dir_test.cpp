// Hugging Face model directories: single file, sharded index, and the index's hostile cases (paths
// escaping the directory, missing shards, tensors absent or duplicated), plus config.json.
#include "formats/hf_model_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "formats/safetensors_json.h"
#include "formats/safetensors_writer.h"

namespace qe {
namespace {
namespace fs = std::filesystem;

// A fresh directory per test: <tmp>/hf_<name>_<pid>/model (the parent holds files "outside" the model).
std::string model_dir(const std::string& name) {
  fs::path root = fs::path(QE_TEST_TMPDIR) / ("hf_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "model");
  return (root / "model").string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A safetensors file with one U8 tensor per name; tensor i holds bytes i+1 repeated i+1 times.
void write_shard(const std::string& path, const std::vector<std::string>& names) {
  std::vector<SafetensorsDecl> decls;
  for (size_t i = 0; i < names.size(); ++i) decls.push_back({names[i], i == 0 ? "F32" : "U8", {i + 1}});
  auto w = SafetensorsWriter::create(path, decls, {{"format", "pt"}});
  ASSERT_TRUE(w.ok()) << w.error().message();
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<std::byte> data((i == 0 ? 4 : 1) * (i + 1), std::byte(i + 1));
    ASSERT_TRUE(w->write_tensor(names[i], data));
  }
  ASSERT_TRUE(w->commit());
}

void write_index(const std::string& dir, const std::string& weight_map_json) {
  write_text(dir + "/model.safetensors.index.json",
             R"({"metadata": {"total_size": 0}, "weight_map": )" + weight_map_json + "}");
}

// Two shards: a, b in shard 1; c in shard 2.
void write_sharded(const std::string& dir) {
  write_shard(dir + "/model-00001-of-00002.safetensors", {"a", "b"});
  write_shard(dir + "/model-00002-of-00002.safetensors", {"c"});
}

constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

void expect_error(const std::string& dir, const std::string& part) {
  auto m = HfModelDir::open(dir);
  ASSERT_FALSE(m.ok()) << "accepted; expected: " << part;
  EXPECT_NE(m.error().message().find(part), std::string::npos) << m.error().message();
  EXPECT_FALSE(m.error().file.empty());
}

TEST(HfModelDir, SingleFileWithConfig) {
  std::string dir = model_dir("single");
  write_shard(dir + "/model.safetensors", {"x", "y"});
  write_text(dir + "/config.json", R"({"hidden_size": 64, "architectures": ["LlamaForCausalLM"]})");
  auto m = HfModelDir::open(dir);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_FALSE(m->sharded());
  ASSERT_EQ(m->shards().size(), 1u);
  EXPECT_EQ(m->shards()[0].file_name, "model.safetensors");
  ASSERT_EQ(m->tensors().size(), 2u);
  EXPECT_EQ(m->tensors()[1].info->name, "y");
  ASSERT_TRUE(m->config().has_value());
  EXPECT_EQ((*m->config())["hidden_size"], 64);
  auto x = m->float_tensor("x");
  ASSERT_TRUE(x.ok()) << x.error().message();
  EXPECT_EQ(x->type, SafetensorsFloatType::F32);
  EXPECT_EQ(x->data.size(), 4u);
  auto y = m->float_tensor("y");
  ASSERT_FALSE(y.ok());
  EXPECT_EQ(y.error().message(),
            dir + "/model.safetensors: tensor y: dtype U8 is not supported (F32, F16, BF16 are)");
  EXPECT_FALSE(m->float_tensor("nope").ok());
}

TEST(HfModelDir, NoConfigIsFine) {
  std::string dir = model_dir("noconfig");
  write_shard(dir + "/model.safetensors", {"x"});
  auto m = HfModelDir::open(dir);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_FALSE(m->config().has_value());
}

TEST(HfModelDir, ShardedIndexMergesTensors) {
  std::string dir = model_dir("sharded");
  write_sharded(dir);
  // Listed out of shard order; shards come back sorted by name.
  write_index(dir, R"({"c": "model-00002-of-00002.safetensors", "a": "model-00001-of-00002.safetensors",
                       "b": "./model-00001-of-00002.safetensors"})");
  auto m = HfModelDir::open(dir);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_TRUE(m->sharded());
  ASSERT_EQ(m->shards().size(), 2u);
  EXPECT_EQ(m->shards()[0].file_name, kShard1);
  EXPECT_EQ(m->shards()[1].file_name, kShard2);
  ASSERT_EQ(m->tensors().size(), 3u);
  std::vector<std::pair<std::string, size_t>> got;
  for (const HfTensor& t : m->tensors()) got.emplace_back(t.info->name, t.shard);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, size_t>>{{"a", 0}, {"b", 0}, {"c", 1}}));
  const HfTensor* c = m->find("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->info->data.size(), 4u);
  EXPECT_EQ(c->info->data[0], std::byte{1});
  EXPECT_EQ(m->shard_path(*c), dir + "/" + kShard2);

  auto j = safetensors_to_json(*m, true);
  ASSERT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"][2]["name"], "c");
  EXPECT_EQ(j["tensors"][2]["file"], kShard2);
  EXPECT_EQ(j["tensors"][2]["xxh3"], xxh3_hex(c->info->data));
  EXPECT_EQ(j["metadata"]["format"], "pt");
  EXPECT_FALSE(j["metadata"].contains("config"));

  // The move keeps the tensor views valid.
  HfModelDir moved = std::move(*m);
  EXPECT_EQ(moved.find("c")->info->data[0], std::byte{1});
}

TEST(HfModelDir, JsonIncludesConfig) {
  std::string dir = model_dir("jsoncfg");
  write_shard(dir + "/model.safetensors", {"x"});
  write_text(dir + "/config.json", R"({"model_type": "llama"})");
  auto m = HfModelDir::open(dir);
  ASSERT_TRUE(m.ok()) << m.error().message();
  auto j = safetensors_to_json(*m, false);
  EXPECT_EQ(j["metadata"]["config"]["model_type"], "llama");
  EXPECT_EQ(j["tensors"][0]["file"], "model.safetensors");
}

TEST(HfModelDir, IndexTakesPrecedenceOverSingleFile) {
  std::string dir = model_dir("both");
  write_sharded(dir);
  write_shard(dir + "/model.safetensors", {"zzz"});
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                       "c": "model-00002-of-00002.safetensors"})");
  auto m = HfModelDir::open(dir);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->find("zzz"), nullptr);
}

TEST(HfModelDir, NeitherFile) {
  std::string dir = model_dir("empty");
  auto m = HfModelDir::open(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().message(),
            dir + ": no model.safetensors or model.safetensors.index.json in this directory");
}

TEST(HfModelDir, NotADirectory) {
  std::string dir = model_dir("notdir");
  write_shard(dir + "/model.safetensors", {"x"});
  expect_error(dir + "/model.safetensors", "is not a directory");
  expect_error(dir + "/missing", "no such directory");
}

TEST(HfModelDir, RejectsParentComponent) {
  std::string dir = model_dir("dotdot");
  write_shard(dir + "/../x.safetensors", {"a"});  // exists, so only the path itself is wrong
  write_index(dir, R"({"a": "../x.safetensors"})");
  expect_error(dir, "weight_map.a: shard path \"../x.safetensors\" has a \"..\" component");
  write_index(dir, R"({"a": "sub/../../x.safetensors"})");
  expect_error(dir, "has a \"..\" component");
}

TEST(HfModelDir, RejectsAbsolutePath) {
  std::string dir = model_dir("absolute");
  write_index(dir, R"({"a": "/etc/passwd"})");
  expect_error(dir, "model.safetensors.index.json: weight_map.a: shard path \"/etc/passwd\" is absolute");
}

TEST(HfModelDir, RejectsSymlinkOutOfDirectory) {
  std::string dir = model_dir("symlink");
  write_shard(dir + "/../outside.safetensors", {"a"});
  fs::create_symlink("../outside.safetensors", dir + "/link.safetensors");
  write_index(dir, R"({"a": "link.safetensors"})");
  expect_error(dir, "resolves to");
  expect_error(dir, "outside the model directory");
  // A directory symlink that leads out counts the same.
  fs::create_directory_symlink("..", dir + "/up");
  write_index(dir, R"({"a": "up/outside.safetensors"})");
  expect_error(dir, "outside the model directory");
}

TEST(HfModelDir, AcceptsSymlinkInsideDirectory) {
  std::string dir = model_dir("symlink_in");
  fs::create_directories(dir + "/blobs");
  write_shard(dir + "/blobs/abc", {"a"});
  fs::create_symlink("blobs/abc", dir + "/model-00001-of-00001.safetensors");
  write_index(dir, R"({"a": "model-00001-of-00001.safetensors"})");
  auto m = HfModelDir::open(dir);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->tensors().size(), 1u);
}

TEST(HfModelDir, MissingShard) {
  std::string dir = model_dir("missing");
  write_shard(dir + "/" + kShard1, {"a", "b"});
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                       "c": "model-00002-of-00002.safetensors"})");
  expect_error(dir, "weight_map.c: shard file \"model-00002-of-00002.safetensors\" cannot be opened");
}

TEST(HfModelDir, TensorAbsentFromItsShard) {
  std::string dir = model_dir("absent");
  write_sharded(dir);
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                       "c": "model-00002-of-00002.safetensors", "d": "model-00002-of-00002.safetensors"})");
  expect_error(dir, "weight_map.d: tensor is not in its shard model-00002-of-00002.safetensors");
  // Listed under the wrong shard.
  write_index(dir, R"({"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                       "c": "model-00002-of-00002.safetensors"})");
  expect_error(dir, "weight_map.a: tensor is not in its shard model-00002-of-00002.safetensors");
}

TEST(HfModelDir, TensorInTwoShards) {
  std::string dir = model_dir("twice");
  write_shard(dir + "/" + kShard1, {"a", "b"});
  write_shard(dir + "/" + kShard2, {"c", "a"});
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                       "c": "model-00002-of-00002.safetensors"})");
  expect_error(dir, std::string(kShard2) + ": tensor a: also present in shard " + kShard1);
}

TEST(HfModelDir, TensorMissingFromIndex) {
  std::string dir = model_dir("unlisted");
  write_sharded(dir);
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"})");
  expect_error(dir, "tensor b: present in the shard but not listed in model.safetensors.index.json");
}

TEST(HfModelDir, BadIndex) {
  std::string dir = model_dir("badindex");
  write_sharded(dir);
  write_text(dir + "/model.safetensors.index.json", R"({"weight_map": {"a": )");
  expect_error(dir, "model.safetensors.index.json: invalid JSON");
  write_text(dir + "/model.safetensors.index.json", R"({"metadata": {}})");
  expect_error(dir, "weight_map: missing");
  write_index(dir, R"(["a"])");
  expect_error(dir, "weight_map: must be an object, got array");
  write_index(dir, R"({"a": 3})");
  expect_error(dir, "weight_map.a: shard must be a string, got number");
  write_index(dir, R"({})");
  expect_error(dir, "weight_map: lists no tensors");
  write_index(dir, R"({"a": ""})");
  expect_error(dir, "weight_map.a: empty shard file name");
  write_index(dir, R"({"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"})");
  expect_error(dir, "duplicate key \"weight_map.a\"");
  write_text(dir + "/model.safetensors.index.json", "[]");
  expect_error(dir, "must be a JSON object, got array");
}

TEST(HfModelDir, CorruptShardIsNamed) {
  std::string dir = model_dir("corrupt");
  write_text(dir + "/model.safetensors", "garbage");
  expect_error(dir, dir + "/model.safetensors: header: file is 7 bytes");
}

TEST(HfModelDir, BadConfig) {
  std::string dir = model_dir("badconfig");
  write_shard(dir + "/model.safetensors", {"x"});
  write_text(dir + "/config.json", R"({"hidden_size": 64,)");
  expect_error(dir, dir + "/config.json: invalid JSON");
  write_text(dir + "/config.json", R"([1, 2])");
  expect_error(dir, dir + "/config.json: must be a JSON object, got array");
  write_text(dir + "/config.json", R"({"a": 1, "a": 2})");
  expect_error(dir, dir + "/config.json: duplicate key \"a\"");
}

}  // namespace
}  // namespace qe
