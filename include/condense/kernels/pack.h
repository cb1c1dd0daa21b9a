#pragma once
/// \file
/// Sub-byte packing of quantization codes (no LibTorch): 4-bit codes two per byte, 2-bit four per
/// byte, 1-bit eight per byte. Element i lives in byte i·bits/8 at bit offset (i·bits) mod 8, low
/// bits first (the layout of ggml's q4 nibbles and of numpy.packbits(bitorder="little")).

#include <cstddef>
#include <cstdint>

namespace condense::kernels {

/// Bytes that n codes of `bits` bits occupy (the last byte is zero-padded).
constexpr std::size_t packed_bytes(int64_t n, int bits) {
  return static_cast<std::size_t>((n * bits + 7) / 8);
}

/// Packs n codes (each < 2^bits, bits in {1, 2, 4, 8}) into packed_bytes(n, bits) bytes at `out`.
void pack_bits_ref(const uint8_t* codes, int64_t n, int bits, uint8_t* out);
/// The inverse: n codes from `packed`.
void unpack_bits_ref(const uint8_t* packed, int64_t n, int bits, uint8_t* codes);

}  // namespace condense::kernels
