#pragma once
/// \file
/// The non-GEMM parts of an encoder layer for the inference runtime (no LibTorch): attention of
/// one sequence and head, residual + LayerNorm, activation range and conversions. Each has a
/// scalar reference (`*_ref`) and one vector body compiled three times — generic (SSE2, the
/// x86-64 baseline), AVX2 + FMA and AVX-512 — of which `isa` picks one (default: active_isa()).
/// A level the CPU lacks throws std::invalid_argument.

#include <cstdint>

#include "condense/kernels/isa.h"

namespace condense::kernels {

/// Floats of scratch attention_head and attention_head_bf16 need for a sequence of `len` tokens
/// and head width `d`.
int64_t attention_scratch_floats(int64_t len, int64_t d);

/// Scaled dot-product attention of one sequence and one head (Vaswani et al. 2017), on
/// unpadded tokens, so no mask: out[i] = Σⱼ softmax_j(scale · q[i]·k[j]) v[j]. q, k and v are
/// rows of `len` × `d` with row stride `ld` (the fused QKV output); out has row stride `ld_out`.
/// Queries go in tiles of 8 (AVX-512) or 4 rows whose scores (tile × len floats) are the only
/// ones live, beside Kᵀ (d × len) in `scratch`: the len × len matrix is never materialised.
void attention_head(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d, float scale,
                    float* out, int64_t ld_out, float* scratch, Isa isa = active_isa());
void attention_head_ref(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                        float scale, float* out, int64_t ld_out);

/// The same attention with both products in bf16 (AVX-512 BF16, VDPBF16PS: Q·Kᵀ and P·V on
/// bf16-rounded operands, fp32 accumulation; softmax and its sum in fp32): twice the
/// multiply-adds per instruction, for the runtime's bf16 and int8 precisions. Needs
/// attention_bf16_supported(d); throws std::invalid_argument otherwise.
bool attention_bf16_supported(int64_t d);
void attention_head_bf16(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                         float scale, float* out, int64_t ld_out, float* scratch);
/// Its scalar twin: the same roundings (q·scale, k, v and the unnormalised probabilities to
/// bf16), exact sums.
void attention_head_bf16_ref(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                             float scale, float* out, int64_t ld_out);

/// out[r] = LayerNorm(x[r] + residual[r]) · gamma + beta for `rows` rows of width h (residual
/// may be null; out may alias x or residual). Two passes over each row for the variance.
void add_layer_norm(const float* x, const float* residual, const float* gamma, const float* beta, int64_t rows,
                    int64_t h, float eps, float* out, Isa isa = active_isa());
void add_layer_norm_ref(const float* x, const float* residual, const float* gamma, const float* beta, int64_t rows,
                        int64_t h, float eps, float* out);

/// Minimum and maximum of n floats (n > 0): the range of dynamic activation quantization.
void min_max(const float* x, int64_t n, float* lo, float* hi, Isa isa = active_isa());
void min_max_ref(const float* x, int64_t n, float* lo, float* hi);

/// float → bfloat16 with round to nearest even (NaN stays NaN).
void to_bf16(const float* x, int64_t n, uint16_t* y, Isa isa = active_isa());
void to_bf16_ref(const float* x, int64_t n, uint16_t* y);

/// The ISA attention_head etc. run at when called with `isa` (the same, or "generic" for Generic).
const char* kernel_name(Isa isa);

}  // namespace condense::kernels
