// The transformer kernels' vector body (transformer_body.h) built for avx2 (see CMakeLists.txt for its flags).
#define CONDENSE_VEC_BYTES 32
#define CONDENSE_ISA_NS avx2
#include "transformer_body.h"
#include "transformer_isa.h"

namespace condense::kernels::avx2 {
const TransformerKernels kernels{attention_head, add_layer_norm, min_max, to_bf16};
}  // namespace condense::kernels::avx2
