#include "formats/atomic_file.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "formats/mapped_file.h"

namespace qe {
namespace {

std::string fresh_dir(const std::string& name) {
  std::string dir = std::string(QE_TEST_TMPDIR) + "/atomic_" + name + "_" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  if (d) ::closedir(d);
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(AtomicFile, CommitWritesWholeFileWithPadding) {
  std::string dir = fresh_dir("commit");
  std::string path = dir + "/out.bin";
  auto f = AtomicFile::create(path, false);
  ASSERT_TRUE(f.ok()) << f.error().message();
  ASSERT_TRUE(f->write("abc", 3));
  ASSERT_TRUE(f->pad_to(8));
  EXPECT_EQ(f->offset(), 8u);
  ASSERT_TRUE(f->write("z", 1));
  EXPECT_TRUE(list_dir(dir).size() == 1);  // only the temporary so far
  ASSERT_TRUE(f->commit());
  EXPECT_EQ(slurp(path), std::string("abc\0\0\0\0\0z", 9));
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, RefusesExistingOutputUnlessOverwrite) {
  std::string dir = fresh_dir("exists");
  std::string path = dir + "/out.bin";
  std::ofstream(path) << "old";
  auto refused = AtomicFile::create(path, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("already exists"), std::string::npos);
  EXPECT_NE(refused.error().message().find(path), std::string::npos);
  EXPECT_EQ(refused.error().option, "overwrite");  // the setting that decides it; no flag in the text
  EXPECT_EQ(refused.error().message().find("--"), std::string::npos);

  auto f = AtomicFile::create(path, true);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->write("new", 3));
  ASSERT_TRUE(f->commit());
  EXPECT_EQ(slurp(path), "new");
}

TEST(AtomicFile, OutputThatAppearsDuringWriteIsNotClobbered) {
  std::string dir = fresh_dir("race");
  std::string path = dir + "/out.bin";
  auto f = AtomicFile::create(path, false);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->write("new", 3));
  std::ofstream(path) << "someone else's";
  Status s = f->commit();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().option, "overwrite");
  EXPECT_EQ(slurp(path), "someone else's");
  EXPECT_EQ(list_dir(dir).size(), 1u);  // temporary removed
}

TEST(AtomicFile, AbandonedWriteLeavesNothing) {
  std::string dir = fresh_dir("abandon");
  {
    auto f = AtomicFile::create(dir + "/out.bin", false);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->write("partial", 7));
  }
  EXPECT_TRUE(list_dir(dir).empty());
}

// A full disk, simulated with RLIMIT_FSIZE (write fails with EFBIG, like ENOSPC it is a short write):
// the error names the output, and neither a partial output nor the temporary is left behind.
TEST(AtomicFile, FullDiskLeavesNoPartialFile) {
  std::string dir = fresh_dir("full");
  std::string path = dir + "/out.bin";
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1 << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);

  Status result;
  {
    auto f = AtomicFile::create(path, false);
    ASSERT_TRUE(f.ok());
    std::vector<char> chunk(3 << 20, 'x');
    result = f->write(chunk.data(), chunk.size());
    if (result) result = f->write(chunk.data(), chunk.size());
    if (result) result = f->commit();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message().find(path), std::string::npos) << result.error().message();
  EXPECT_TRUE(list_dir(dir).empty());
}

TEST(AtomicFile, DirectoryAsOutputIsAnError) {
  std::string dir = fresh_dir("dir");
  auto f = AtomicFile::create(dir, true);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message().find("directory"), std::string::npos);
}

TEST(MappedFile, MapsBytesAndRejectsDirectoriesAndMissingFiles) {
  std::string dir = fresh_dir("map");
  std::ofstream(dir + "/f.bin", std::ios::binary) << "hello";
  auto m = MappedFile::open(dir + "/f.bin");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data()), 5), "hello");
  MappedFile moved = std::move(m.value());
  EXPECT_EQ(moved.size(), 5u);

  std::ofstream(dir + "/empty.bin");
  auto e = MappedFile::open(dir + "/empty.bin");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), 0u);

  auto d = MappedFile::open(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("is a directory"), std::string::npos);
  auto missing = MappedFile::open(dir + "/nope.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("nope.gguf"), std::string::npos);
}

}  // namespace
}  // namespace qe
