// The per-ISA kernel tables of kernels/transformer.h (internal).
#pragma once
#include <cstdint>

namespace condense::kernels {
struct TransformerKernels {
  void (*attention_head)(const float*, const float*, const float*, int64_t, int64_t, int64_t, float, float*, int64_t,
                         float*);
  void (*add_layer_norm)(const float*, const float*, const float*, const float*, int64_t, int64_t, float, float*);
  void (*min_max)(const float*, int64_t, float*, float*);
  void (*to_bf16)(const float*, int64_t, uint16_t*);
};
namespace generic { extern const TransformerKernels kernels; }
namespace avx2 { extern const TransformerKernels kernels; }
namespace avx512 { extern const TransformerKernels kernels; }
}  // namespace condense::kernels
