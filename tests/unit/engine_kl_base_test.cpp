// The --kl-divergence-base file (model/kl_base_file.h) against hostile input: one corrupt file per
// failure, each refused with the part it names and before anything large is allocated; and the writer's
// bytes read back exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "model/kl_base_file.h"
#include "model/perplexity.h"

namespace qe::model::ppl {
namespace {

std::string tmp_path(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/kl_base_" + name + "_" + std::to_string(::getpid());
}

// A well-formed file: header, tokens 0..n-1, rows whose entries count up from 1.
std::vector<uint8_t> good_bytes(int32_t n_ctx, int32_t n_vocab, int32_t n_chunk) {
  std::vector<uint8_t> b(kKlBaseMagic, kKlBaseMagic + 8);
  auto put32 = [&](int32_t v) {
    uint8_t x[4];
    std::memcpy(x, &v, 4);
    b.insert(b.end(), x, x + 4);
  };
  put32(n_ctx);
  put32(n_vocab);
  put32(n_chunk);
  for (int32_t i = 0; i < n_chunk * n_ctx; ++i) put32(i % n_vocab);
  const int64_t n_u16 = n_chunk * kl_base_rows_per_chunk(n_ctx) * log_prob_row_size(n_vocab);
  for (int64_t i = 0; i < n_u16; ++i) {
    const uint16_t v = static_cast<uint16_t>(i + 1);
    b.push_back(static_cast<uint8_t>(v & 0xff));
    b.push_back(static_cast<uint8_t>(v >> 8));
  }
  return b;
}

std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = tmp_path(name);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

void set32(std::vector<uint8_t>& b, size_t off, int32_t v) {
  std::memcpy(b.data() + off, &v, 4);
}

// Opens the bytes and expects an error naming `field` (and the file).
void expect_refused(const std::string& name, const std::vector<uint8_t>& bytes, const std::string& field) {
  const std::string path = write(name, bytes);
  Result<KlBaseReader> r = KlBaseReader::open(path);
  ASSERT_FALSE(r.ok()) << name;
  EXPECT_EQ(r.error().field, field) << name << ": " << r.error().message();
  EXPECT_EQ(r.error().file, path) << name;
  ::unlink(path.c_str());
}

TEST(KlBaseFile, SizeOfAKnownHeader) {
  // n_ctx 4: one scored position per chunk (position 2); n_vocab 3: rows of 2*2 + 4 uint16.
  EXPECT_EQ(kl_base_rows_per_chunk(4), 1);
  EXPECT_EQ(kl_base_rows_per_chunk(512), 255);
  EXPECT_EQ(kl_base_file_size({4, 3, 2}), 20 + 2 * 4 * 4 + 2 * 1 * 8 * 2);
  EXPECT_EQ(kl_base_file_size({4, 3, 2}), static_cast<int64_t>(good_bytes(4, 3, 2).size()));
  EXPECT_EQ(kl_base_file_size({0, 3, 2}), std::nullopt);
  // 2^31 chunks of 2^24 positions and a 2^31 vocabulary: ~2^87 bytes, refused rather than wrapped.
  EXPECT_EQ(kl_base_file_size({1 << 24, INT32_MAX, INT32_MAX}), std::nullopt);
}

TEST(KlBaseFile, ReadsAGoodFile) {
  const std::vector<uint8_t> bytes = good_bytes(8, 5, 3);
  const std::string path = write("good", bytes);
  Result<KlBaseReader> r = KlBaseReader::open(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->header().n_ctx, 8);
  EXPECT_EQ(r->header().n_vocab, 5);
  EXPECT_EQ(r->header().n_chunk, 3);
  ASSERT_EQ(r->tokens().size(), 24u);
  for (size_t i = 0; i < 24; ++i) EXPECT_EQ(r->tokens()[i], static_cast<int32_t>(i % 5));
  ASSERT_EQ(r->chunk_size(), 3 * 10);  // 3 scored positions, rows of 2*3 + 4
  std::vector<uint16_t> rows(static_cast<size_t>(r->chunk_size()));
  for (int c = 0; c < 3; ++c) {
    ASSERT_TRUE(r->read_chunk(rows).ok());
    EXPECT_EQ(rows.front(), c * 30 + 1);
    EXPECT_EQ(rows.back(), c * 30 + 30);
  }
  const Status past = r->read_chunk(rows);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().field, "chunk 4");
  ::unlink(path.c_str());
}

TEST(KlBaseFile, MissingFileNamesTheSetting) {
  Result<KlBaseReader> r = KlBaseReader::open(tmp_path("does_not_exist"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().option, "kl_base");
  EXPECT_EQ(r.error().reason.find("--"), std::string::npos) << "library errors name no flag";
}

TEST(KlBaseFile, HostileHeaders) {
  const std::vector<uint8_t> good = good_bytes(8, 5, 2);

  std::vector<uint8_t> b = good;
  b[0] = 'X';
  expect_refused("magic", b, "offset 0");
  expect_refused("empty", {}, "offset 0");
  expect_refused("magic_only", std::vector<uint8_t>(good.begin(), good.begin() + 8), "header");
  expect_refused("short_header", std::vector<uint8_t>(good.begin(), good.begin() + 17), "header");

  for (int32_t n_ctx : {3, 0, -8, INT32_MIN, (1 << 24) + 1, INT32_MAX}) {
    b = good;
    set32(b, 8, n_ctx);
    expect_refused("n_ctx_" + std::to_string(n_ctx), b, "n_ctx");
  }
  for (int32_t n_vocab : {0, -1, INT32_MIN}) {
    b = good;
    set32(b, 12, n_vocab);
    expect_refused("n_vocab_" + std::to_string(n_vocab), b, "n_vocab");
  }
  for (int32_t n_chunk : {0, -1, INT32_MIN}) {
    b = good;
    set32(b, 16, n_chunk);
    expect_refused("n_chunk_" + std::to_string(n_chunk), b, "n_chunk");
  }
  // Counts that claim more than the file holds (or less): the size must match exactly.
  b = good;
  set32(b, 16, 3);
  expect_refused("n_chunk_one_more", b, "size");
  b = good;
  set32(b, 12, 6);  // 6 -> rows of 10 uint16, as 5 does: same size, so this one is legal
  const std::string same_row = write("n_vocab_same_row", b);
  EXPECT_TRUE(KlBaseReader::open(same_row).ok());
  ::unlink(same_row.c_str());
  b = good;
  set32(b, 12, 7);
  expect_refused("n_vocab_larger_row", b, "size");
  b = good;
  b.pop_back();
  expect_refused("one_byte_short", b, "size");
  b = good;
  b.push_back(0);
  expect_refused("one_byte_extra", b, "size");
  b = std::vector<uint8_t>(good.begin(), good.begin() + 20);
  expect_refused("header_only", b, "size");
  // Headers whose implied size overflows 64 bits (the check must not wrap around to a match).
  b = good;
  set32(b, 8, 1 << 24);
  set32(b, 12, INT32_MAX);
  set32(b, 16, INT32_MAX);
  expect_refused("overflow", b, "header");
}

TEST(KlBaseFile, WriterRoundTrip) {
  const std::string path = tmp_path("written");
  const KlBaseHeader h{6, 3, 2};
  std::vector<int32_t> tokens(20);  // more than n_chunk * n_ctx: only the first 12 are written
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i % 3);
  const size_t chunk = static_cast<size_t>(kl_base_rows_per_chunk(6) * log_prob_row_size(3));
  {
    Result<KlBaseWriter> w = KlBaseWriter::create(path, h, tokens);
    ASSERT_TRUE(w.ok()) << w.error().message();
    std::vector<uint16_t> rows(chunk);
    for (int c = 0; c < 2; ++c) {
      for (size_t i = 0; i < chunk; ++i) rows[i] = static_cast<uint16_t>(1000 * c + i);
      ASSERT_TRUE(w->write_chunk(rows).ok());
    }
    ASSERT_TRUE(w->commit().ok());
  }
  Result<KlBaseReader> r = KlBaseReader::open(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->header().n_ctx, 6);
  EXPECT_EQ(r->header().n_vocab, 3);
  EXPECT_EQ(r->header().n_chunk, 2);
  EXPECT_EQ(std::vector<int32_t>(r->tokens().begin(), r->tokens().end()),
            std::vector<int32_t>(tokens.begin(), tokens.begin() + 12));
  std::vector<uint16_t> rows(chunk);
  for (int c = 0; c < 2; ++c) {
    ASSERT_TRUE(r->read_chunk(rows).ok());
    for (size_t i = 0; i < chunk; ++i) ASSERT_EQ(rows[i], 1000 * c + i);
  }
  ::unlink(path.c_str());
}

TEST(KlBaseFile, IncompleteWriteLeavesNoFile) {
  const std::string path = tmp_path("incomplete");
  {
    const std::vector<int32_t> tokens(12, 1);
    Result<KlBaseWriter> w = KlBaseWriter::create(path, {6, 3, 2}, tokens);
    ASSERT_TRUE(w.ok());
    std::vector<uint16_t> rows(static_cast<size_t>(kl_base_rows_per_chunk(6) * log_prob_row_size(3)));
    ASSERT_TRUE(w->write_chunk(rows).ok());
    const Status st = w->commit();  // one chunk of two
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().field, "n_chunk");
  }
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "an incomplete base file must not appear";
}

}  // namespace
}  // namespace qe::model::ppl
