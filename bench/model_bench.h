// qbench -m: whole-model speed with llama-bench's tests, flags and output, so a table from each tool
// compares like with like (bench/model_bench.cpp has the details).
#pragma once

namespace qe::bench {

// True when the command line names a model (-m / --model): qbench then runs the model tests instead
// of the kernel sweep.
bool wants_model_bench(int argc, char** argv);

// Parses llama-bench's flags, runs its tests through the engine API and prints the results (Markdown,
// JSON or JSON lines on stdout). Returns the process's exit code: 0, 1 when a model fails to load or
// run, 2 for a bad command line.
int run_model_bench(int argc, char** argv);

}  // namespace qe::bench
