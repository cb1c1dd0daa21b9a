#pragma once
/// \file
/// The instruction sets the kernels are built for, chosen once from CPUID. CONDENSE_ISA
/// (generic, avx2, avx512, avx512_vnni, avx512_amx) lowers the choice — for comparisons and for
/// testing the narrower paths on a wide machine — but never raises it above what the CPU has. The
/// GEMMs run in oneDNN, whose own dispatch is capped at the same level (avx512_amx lets it use AMX
/// tiles, avx512_vnni stops it at VNNI and BF16 vector instructions, avx512 at AVX-512 without them).

#include <string>

namespace condense::kernels {

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2, Avx512Vnni = 3, Avx512Amx = 4 };

/// "generic", "avx2", "avx512", "avx512_vnni", "avx512_amx".
const char* to_string(Isa isa);
/// Parses the names above; throws std::invalid_argument naming the value otherwise.
Isa parse_isa(const std::string& name);
/// The widest level this CPU supports (AVX2 needs FMA; AVX-512 needs F, BW, VL and DQ;
/// the VNNI level also AVX-512 VNNI and BF16; the AMX level also AMX-TILE, -BF16 and -INT8 and the
/// kernel's leave to use the tile registers, which Linux grants on request).
Isa cpu_isa();
/// Whether this CPU can run kernels of `isa`.
bool cpu_supports(Isa isa);
/// The level the kernels run at: cpu_isa(), lowered by CONDENSE_ISA (read once).
Isa active_isa();

}  // namespace condense::kernels
