// A process that preloads this library (LD_PRELOAD) sees a CPU without AVX-512 and AMX:
// an AVX2 + FMA CPU such as AMD Zen 3. Every CPUID the process executes after load
// (ONNX Runtime's MLAS and cpuinfo, PyTorch's, NumPy's and OpenBLAS's dispatch, ours) is
// answered with those feature bits cleared, so each library picks the kernels it would
// pick on such a CPU. `mlpinfer bench --isa` preloads it in the process that measures the
// avx2 family, so that the peers in that run are AVX2 peers too (issue 12's floors are
// ratios to ONNX Runtime on an AVX2-only CPU; without it, ONNX Runtime ran its AVX-512
// kernels against our AVX2 ones on the development machine's Xeon).
//
// How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, on Intel since Ivy Bridge and on
// AMD since Zen 4, and under KVM; /proc/cpuinfo lists "cpuid_fault") makes CPUID trap with
// SIGSEGV; the handler answers it with the real values minus the hidden bits. The setting
// is inherited by threads and by fork, and reset by execve (a child that should see the
// same CPU preloads this library again through the inherited LD_PRELOAD). Where faulting
// is unavailable, nothing is hidden and `mlpinfer_hidden_avx512()` returns 0, so the
// caller can report that rather than claim an AVX2-only measurement.
//
// Not hidden: XCR0 (XGETBV cannot trap); every library checks CPUID's AVX-512 bits before
// XCR0's. glibc chose its string functions before this library loaded.
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <stdint.h>  // not <cstdint>: the library needs no C++ library at all

namespace {

struct sigaction previous_segv_action;
int hidden = 0;

bool set_cpuid_faulting(bool on) {
  // ARCH_SET_CPUID's argument is whether CPUID is allowed.
  return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1) == 0;
}

// The mask of the given bit positions.
template <int... Positions>
constexpr uint32_t bits = ((1u << Positions) | ...);

// Leaf 7 subleaf 0, from Intel's SDM vol. 2A, table 3-8, and AMD's APM vol. 3, E.3.6.
// EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL.
constexpr uint32_t kLeaf7Ebx = bits<16, 17, 21, 26, 27, 28, 30, 31>;
// ECX: AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
constexpr uint32_t kLeaf7Ecx = bits<1, 6, 11, 12, 14>;
// EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX-TILE, AMX-INT8.
constexpr uint32_t kLeaf7Edx = bits<2, 3, 8, 22, 23, 24, 25>;
// Leaf 7 subleaf 1 EAX: AVX512_BF16, AMX-FP16; EDX: AMX-COMPLEX, AVX10.
constexpr uint32_t kLeaf7Sub1Eax = bits<5, 21>;
constexpr uint32_t kLeaf7Sub1Edx = bits<8, 19>;

void answer_cpuid(int signal, siginfo_t* info, void* context) {
  auto* registers = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
  // A faulting CPUID is a general-protection fault (si_code SI_KERNEL) at a 0F A2.
  const auto* instruction = reinterpret_cast<const unsigned char*>(registers[REG_RIP]);
  if (info->si_code != SI_KERNEL || instruction[0] != 0x0f || instruction[1] != 0xa2) {
    // A real fault: hand it to whoever had SIGSEGV before (Python's faulthandler, or
    // the default action), by re-executing the instruction under that action.
    sigaction(signal, &previous_segv_action, nullptr);
    return;
  }
  const auto leaf = static_cast<uint32_t>(registers[REG_RAX]);
  const auto subleaf = static_cast<uint32_t>(registers[REG_RCX]);
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  set_cpuid_faulting(false);
  __cpuid_count(leaf, subleaf, eax, ebx, ecx, edx);
  set_cpuid_faulting(true);
  if (leaf == 7 && subleaf == 0) {
    ebx &= ~kLeaf7Ebx;
    ecx &= ~kLeaf7Ecx;
    edx &= ~kLeaf7Edx;
  } else if (leaf == 7 && subleaf == 1) {
    eax &= ~kLeaf7Sub1Eax;
    edx &= ~kLeaf7Sub1Edx;
  }
  // CPUID writes the low 32 bits and clears the high ones.
  registers[REG_RAX] = eax;
  registers[REG_RBX] = ebx;
  registers[REG_RCX] = ecx;
  registers[REG_RDX] = edx;
  registers[REG_RIP] += 2;
}

__attribute__((constructor)) void hide_avx512() {
  struct sigaction action = {};
  action.sa_sigaction = answer_cpuid;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGSEGV, &action, &previous_segv_action) != 0) return;
  if (!set_cpuid_faulting(true)) {
    sigaction(SIGSEGV, &previous_segv_action, nullptr);
    return;
  }
  hidden = 1;
}

}  // namespace

// 1 if this process's CPUID hides AVX-512 and AMX, 0 if the system could not (no CPUID
// faulting): read with ctypes by the benchmark, which says which it was.
extern "C" __attribute__((visibility("default"))) int mlpinfer_hidden_avx512() { return hidden; }
