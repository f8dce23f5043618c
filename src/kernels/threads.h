// Thread counts and pinning. Default = physical cores (hwloc): SMT siblings share the int8/FMA pipes
// and the L1/L2 a matmul lives in, so a second thread per core only adds barrier cost.
#pragma once

#include "formats/error.h"

namespace qe::kernels {

// Physical cores this process may run on (hwloc; without hwloc: distinct (package, core) ids in
// /sys/devices/system/cpu, else the online CPU count). Cached, at least 1.
int physical_core_count();

// Threads a matmul uses when the caller passes 0: physical_core_count(), never more than the CPUs
// this process is allowed to use (cgroup/affinity limits), so a 2-core VM and a 64-core server are both right.
int default_thread_count();

// Binds OpenMP thread i of a parallel region of n_threads to physical core i (one PU each), so a thread
// keeps its L1/L2 between layer steps. Needs hwloc; returns an Error otherwise or when n_threads
// exceeds the cores.
Status pin_threads(int n_threads);

}  // namespace qe::kernels
