// qbench --batched: llama-batched-bench's table (PP, TG, B, N_KV, T_PP, S_PP, T_TG, S_TG, T, S) through
// the continuous-batching engine behind qserve (bench/batched_bench.cpp has the details).
#pragma once

namespace qe::bench {

// True when the command line has --batched.
bool wants_batched_bench(int argc, char** argv);

// Runs it and prints the Markdown table. Exit code: 0, 1 when the model fails to load or run, 2 for a
// bad command line.
int run_batched_bench(int argc, char** argv);

}  // namespace qe::bench
