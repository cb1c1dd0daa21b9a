#include "condense/kernels/isa.h"

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
  }
  return "generic";
}

Isa parse_isa(const std::string& name) {
  for (Isa i : {Isa::Generic, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni}) {
    if (name == to_string(i)) return i;
  }
  throw std::invalid_argument("ISA '" + name + "' is not one of generic, avx2, avx512, avx512_vnni");
}

Isa cpu_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
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
