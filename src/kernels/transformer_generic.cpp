// The transformer kernels' vector body (transformer_body.h) built for generic (see CMakeLists.txt for its flags).
#define CONDENSE_VEC_BYTES 16
#define CONDENSE_ISA_NS generic
#include "transformer_body.h"
#include "transformer_isa.h"

namespace condense::kernels::generic {
const TransformerKernels kernels{attention_head, add_layer_norm, min_max, to_bf16};
}  // namespace condense::kernels::generic
