// How many CPUs this process may run on: the default thread count and its ceiling.
#pragma once

namespace mlpinfer {

// At least 1. Linux: the CPUs in this process's affinity mask (taskset, cgroup cpusets),
// not all the machine's. macOS: the performance cores where the system reports them
// (Apple silicon), since rows are split evenly between threads and a thread on an
// efficiency core would hold up the whole call; all logical CPUs on Intel Macs.
// Windows: the active logical processors of all processor groups. Elsewhere:
// std::thread::hardware_concurrency().
unsigned cpus_available();

}  // namespace mlpinfer
