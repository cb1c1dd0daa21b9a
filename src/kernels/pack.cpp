#include "condense/kernels/pack.h"

#include <cstring>

namespace condense::kernels {

void pack_bits_ref(const uint8_t* codes, int64_t n, int bits, uint8_t* out) {
  if (bits == 8) {
    std::memcpy(out, codes, static_cast<std::size_t>(n));
    return;
  }
  const int per_byte = 8 / bits;
  const uint8_t mask = static_cast<uint8_t>((1u << bits) - 1);
  std::memset(out, 0, packed_bytes(n, bits));
  for (int64_t i = 0; i < n; ++i) {
    out[i / per_byte] |= static_cast<uint8_t>((codes[i] & mask) << ((i % per_byte) * bits));
  }
}

void unpack_bits_ref(const uint8_t* packed, int64_t n, int bits, uint8_t* codes) {
  if (bits == 8) {
    std::memcpy(codes, packed, static_cast<std::size_t>(n));
    return;
  }
  const int per_byte = 8 / bits;
  const uint8_t mask = static_cast<uint8_t>((1u << bits) - 1);
  for (int64_t i = 0; i < n; ++i) {
    codes[i] = static_cast<uint8_t>((packed[i / per_byte] >> ((i % per_byte) * bits)) & mask);
  }
}

}  // namespace condense::kernels
