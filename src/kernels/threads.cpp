#include "kernels/threads.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#ifdef QE_HAVE_HWLOC
#include <hwloc.h>
#endif

namespace qe::kernels {
namespace {

int allowed_cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
}

// Fallback topology from sysfs: one core per distinct (package, core_id) among the allowed CPUs.
int sysfs_core_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  std::set<std::pair<int, int>> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
    int p = 0, c = 0;
    if (!(pkg >> p) || !(core >> c)) return 0;
    cores.insert({p, c});
  }
  return static_cast<int>(cores.size());
}

#ifdef QE_HAVE_HWLOC
struct Topology {
  hwloc_topology_t topo = nullptr;
  Topology() {
    if (hwloc_topology_init(&topo) != 0 || hwloc_topology_load(topo) != 0) {
      if (topo) hwloc_topology_destroy(topo);
      topo = nullptr;
    }
  }
  ~Topology() {
    if (topo) hwloc_topology_destroy(topo);
  }
};
Topology& topology() {
  static Topology t;
  return t;
}
#endif

int detect_cores() {
#ifdef QE_HAVE_HWLOC
  if (hwloc_topology_t t = topology().topo) {
    const int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    if (n > 0) return n;
  }
#endif
  const int n = sysfs_core_count();
  return n > 0 ? n : allowed_cpu_count();
}

}  // namespace

int physical_core_count() {
  static const int n = std::max(1, detect_cores());
  return n;
}

int default_thread_count() { return std::max(1, std::min(physical_core_count(), allowed_cpu_count())); }

Status pin_threads(int n_threads) {
#ifdef QE_HAVE_HWLOC
  hwloc_topology_t t = topology().topo;
  if (!t) return Error{"", "threads", "hwloc topology unavailable"};
  if (n_threads < 1 || n_threads > physical_core_count())
    return Error{"", "threads", "cannot pin " + std::to_string(n_threads) + " threads on " +
                                    std::to_string(physical_core_count()) + " cores"};
  int failures = 0;
#pragma omp parallel num_threads(n_threads) reduction(+ : failures)
  {
    hwloc_obj_t core = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, static_cast<unsigned>(omp_get_thread_num()));
    if (!core || !core->cpuset) {
      ++failures;
    } else {
      hwloc_bitmap_t set = hwloc_bitmap_dup(core->cpuset);
      hwloc_bitmap_singlify(set);  // one PU: the SMT sibling stays free for the OS
      if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_THREAD) != 0) ++failures;
      hwloc_bitmap_free(set);
    }
  }
  if (failures) return Error{"", "threads", "hwloc could not bind " + std::to_string(failures) + " threads"};
  return {};
#else
  return Error{"", "threads", "pinning needs hwloc (built with QE_WITH_HWLOC=OFF), n=" + std::to_string(n_threads)};
#endif
}

}  // namespace qe::kernels
