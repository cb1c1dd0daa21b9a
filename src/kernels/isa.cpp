#include "condense/kernels/isa.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace condense::kernels {

const char* to_string(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512_vnni";
    case Isa::Avx512Amx: return "avx512_amx";
  }
  return "generic";
}

Isa parse_isa(const std::string& name) {
  for (Isa i : {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Avx512Amx}) {
    if (name == to_string(i)) return i;
  }
  throw std::invalid_argument("ISA '" + name + "' is not one of generic, avx2, avx512, avx512_vnni, avx512_amx");
}

namespace {
// AMX-TILE, AMX-BF16 and AMX-INT8 (CPUID leaf 7, EDX bits 24, 22, 25), and Linux's leave to use
// the 8 KiB of tile data (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, process-wide),
// without which the first tile instruction faults.
bool amx_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const unsigned need = (1u << 22) | (1u << 24) | (1u << 25);
  if ((d & need) != need) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}
}  // namespace

Isa cpu_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
    if (vnni && amx_usable()) return Isa::Avx512Amx;
    return vnni ? Isa::Avx512Vnni : avx512 ? Isa::Avx512 : avx2 ? Isa::Avx2 : Isa::Generic;
  }();
  return isa;
}

bool cpu_supports(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(cpu_isa()); }

Isa active_isa() {
  static const Isa isa = [] {
    Isa limit = cpu_isa();
    if (const char* env = std::getenv("CONDENSE_ISA"); env != nullptr && *env != '\0') {
      limit = std::min(limit, parse_isa(env), [](Isa a, Isa b) { return static_cast<int>(a) < static_cast<int>(b); });
    }
    return limit;
  }();
  return isa;
}

}  // namespace condense::kernels
