// AMX tile configuration shared by the tile kernels (attention_bf16.cpp, int8_amx.cpp). Files that
// include it are built with -mamx-tile; callers check active_isa() == Isa::Avx512Amx first, which
// also means the kernel granted this process the tile state (isa.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace condense::kernels::amx {

// The 64-byte LDTILECFG operand (Intel SDM, "TILECFG"): palette 1, bytes per row and rows per tile.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Configures tiles 0-7 as 16 rows × 64 bytes on the calling thread (tile state is per thread);
// pair with _tile_release() when done.
__attribute__((target("amx-tile"))) inline void configure_16x64() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

}  // namespace condense::kernels::amx
