// The transformer kernels' vector body (transformer_body.h) built for avx512 (see CMakeLists.txt for its flags).
#define CONDENSE_VEC_BYTES 64
#define CONDENSE_ISA_NS avx512
#include "transformer_body.h"
#include "transformer_isa.h"

namespace condense::kernels::avx512 {
const TransformerKernels kernels{attention_head, add_layer_norm, min_max, to_bf16};
}  // namespace condense::kernels::avx512
