// ConvertObserver::stop_requested (the front end's Ctrl-C): at every point where the conversion asks,
// a stop ends it with interrupted_error(output) and leaves the output's directory as it was (no output,
// no temporary file; an HF export directory the conversion made is gone). Each sweep stops at the 1st,
// 2nd, ... question until the conversion has no more to ask and succeeds, so no stop point is missed.
// (The signal itself, through qconvert: tests/python/test_qconvert_signals.py.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "convert/run.h"
#include "tiny_model.h"

namespace qe::convert {
namespace {

namespace fs = std::filesystem;

std::string tmp(const std::string& name) {
  return std::string(QE_TEST_TMPDIR) + "/stop_" + std::to_string(::getpid()) + "_" + name;
}

std::set<std::string> listing(const std::string& dir) {
  std::set<std::string> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Runs `job` with a stop at the n-th question for n = 1, 2, ... until it succeeds; every stopped run
// must have left `dir` as it found it. Returns how many stop points there were.
int sweep(ConvertJob job, const std::string& dir) {
  const std::set<std::string> before = listing(dir);
  for (int n = 1; n < 10000; ++n) {
    std::atomic<int> asked{0};
    ConvertObserver obs;
    obs.stop_requested = [&] { return asked.fetch_add(1) + 1 >= n; };  // may be asked from a worker thread
    Result<ConvertResult> r = run_convert(job, obs);
    if (r.ok()) {
      EXPECT_GE(asked.load(), n - 1);
      return n - 1;
    }
    EXPECT_TRUE(is_interrupted(r.error())) << "stop at question " << n << ": " << r.error().message();
    EXPECT_EQ(r.error().file, job.output) << "stop at question " << n;
    EXPECT_EQ(r.error().message(), job.output + ": interrupted; nothing was written");
    EXPECT_EQ(listing(dir), before) << "stop at question " << n << " left files behind";
    if (::testing::Test::HasFailure()) return n;
  }
  ADD_FAILURE() << "never finished";
  return 0;
}

struct Dir {
  std::string path;
  explicit Dir(const std::string& name) : path(tmp(name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Dir() { fs::remove_all(path); }
};

TEST(ConvertStop, RequantizeStopsAtEveryTensorAndChunk) {
  Dir d("requantize");
  ConvertJob job;
  job.input = d.path + "/in.gguf";
  qe::testing::write_tiny_model(job.input, {});
  job.output = d.path + "/out.gguf";
  job.policy.target = GgmlType::Q8_0;
  job.n_threads = 2;
  EXPECT_GT(sweep(job, d.path), 10);  // at least one question per tensor
  EXPECT_TRUE(fs::exists(job.output));
}

TEST(ConvertStop, ExportRemovesTheDirectoryItMade) {
  Dir d("to_hf");
  ConvertJob job;
  job.input = d.path + "/in.gguf";
  qe::testing::write_tiny_model(job.input, {});
  job.output = d.path + "/export";
  job.to_hf = true;
  job.export_type = GgmlType::F16;
  job.n_threads = 2;
  EXPECT_GT(sweep(job, d.path), 10);
  EXPECT_TRUE(fs::is_directory(job.output));
}

TEST(ConvertStop, CalibrationStopsInEveryStage) {
  Dir d("awq");
  ConvertJob job;
  job.input = d.path + "/in.gguf";
  qe::testing::write_tiny_model(job.input, {});
  const std::string calib = d.path + "/calib.txt";
  std::ofstream(calib) << std::string(2000, 'a');
  job.output = d.path + "/out.gguf";
  job.policy.target = GgmlType::Q4_0;
  job.n_threads = 2;
  AwqOptions o;
  o.calib_path = calib;
  o.n_samples = 3;
  o.n_ctx = 16;
  o.n_grid = 2;
  job.awq = o;
  // The f32 working copy's tensors, 3 capture windows, 2 searched blocks, the output's tensors.
  EXPECT_GT(sweep(job, d.path), 2 * 10 + 3 + 2);
}

}  // namespace
}  // namespace qe::convert
