// oneDNN matmuls behind kernels::Linear and kernels::Int8Gemm.
//
// oneDNN 2.x pitfalls handled here: runtime output scales force its slow reference-like gemm,
// so the per-channel weight scales are compile-time output scales and the per-call activation
// scale is a binary-mul post-op; the primitive's own bias would be added before the scales, so
// for int8 the bias is a binary-add post-op after them.
#include "condense/kernels/linear.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "int8_amx.h"
#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/isa.h"
#include "condense/kernels/transformer.h"

namespace condense::kernels {

namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine e = [] {
    // Cap oneDNN's own dispatch at the level the rest of the kernels run (before any primitive).
    dnnl::cpu_isa cap = dnnl::cpu_isa::all;
    switch (active_isa()) {
      case Isa::Generic: cap = dnnl::cpu_isa::sse41; break;
      case Isa::Avx2: cap = dnnl::cpu_isa::avx2; break;
      case Isa::Avx512: cap = dnnl::cpu_isa::avx512_core; break;
      case Isa::Avx512Vnni: cap = dnnl::cpu_isa::avx512_core_bf16; break;
      case Isa::Avx512Amx: break;
    }
    if (cap != dnnl::cpu_isa::all) {
      try {
        dnnl::set_max_cpu_isa(cap);
      } catch (const dnnl::error&) {  // already fixed by ONEDNN_MAX_CPU_ISA or an earlier primitive
      }
    }
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

ParallelFor g_parallel_for = nullptr;  // set_parallel_for
}  // namespace

void set_parallel_for(ParallelFor fn) { g_parallel_for = fn; }

void run_parallel(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  if (g_parallel_for != nullptr) {
    g_parallel_for(n, body);
  } else {
    body(0, n);
  }
}

bool bf16_products_supported() {
  // Asking oneDNN is the only answer that matches what Linear will get (ISA caps included).
  static const bool ok = [] {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    try {
      dnnl::matmul::desc desc(dnnl::memory::desc({16, 16}, dt::bf16, tag::ab), dnnl::memory::desc({16, 16}, dt::bf16, tag::any),
                              dnnl::memory::desc({16, 16}, dt::f32, tag::ab));
      dnnl::matmul::primitive_desc pd(desc, engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}

void linear_ref(const float* x, int64_t m, const LinearWeights& w, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < w.n; ++j) {
      double acc = w.bias ? w.bias[j] : 0.0;
      for (int64_t t = 0; t < w.k; ++t) acc += static_cast<double>(x[i * w.k + t]) * w.w[j * w.k + t];
      switch (w.epilogue) {
        case Epilogue::None: break;
        case Epilogue::Gelu: acc = 0.5 * acc * (1.0 + std::erf(acc / std::sqrt(2.0))); break;
        case Epilogue::GeluTanh:
          acc = 0.5 * acc * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (acc + 0.044715 * acc * acc * acc)));
          break;
        case Epilogue::Relu: acc = std::max(acc, 0.0); break;
        case Epilogue::Silu: acc = acc / (1.0 + std::exp(-acc)); break;
      }
      y[i * w.n + j] = static_cast<float>(acc);
    }
  }
}

struct Linear::Impl {
  struct Prim {
    dnnl::matmul prim;
    dnnl::memory::desc src, dst;
    const dnnl::memory* weights;
  };
  LinearType type;
  Epilogue epilogue;
  std::vector<float> wf, scales, bias;
  std::vector<uint16_t> wb;
  std::vector<int8_t> ws;
  bool has_bias = false;
  dnnl::memory bias_mem;
  std::mutex mu;
  std::map<int64_t, Prim> prims;  // by m
  std::vector<std::pair<dnnl::memory::desc, std::unique_ptr<dnnl::memory>>> packed;  // weights per layout
  std::string impl_name;
  std::unique_ptr<AmxInt8> amx;  // int8 on AMX tiles where the shape fits (then oneDNN is not used)
  // Without VNNI, oneDNN's u8×s8 kernels add pairs of products in int16 (vpmaddubsw), which
  // saturates: 255·127·2 > 32767. Split, the input is x = lo + 128·hi with lo < 128 and hi ∈ {0, 1};
  // both products then stay below 2¹⁵ and their sum is the exact integer product.
  bool split = false;

  // part: 0 the whole product (or, split, the low 7 bits of the input plus the high part
  // already in dst, then the epilogue); 1 the high bit of the input alone (split mode only).
  const Prim& get(int64_t m, int64_t n, int64_t k, int part = 0) {
    std::lock_guard<std::mutex> lock(mu);
    const int64_t key = m * 2 + part;
    if (auto it = prims.find(key); it != prims.end()) return it->second;
    const dt src_t = type == LinearType::F32 ? dt::f32 : type == LinearType::BF16 ? dt::bf16 : dt::u8;
    const dt wei_t = type == LinearType::F32 ? dt::f32 : type == LinearType::BF16 ? dt::bf16 : dt::s8;
    dnnl::memory::desc src_md({m, k}, src_t, tag::ab);
    dnnl::memory::desc wei_any({k, n}, wei_t, tag::any);
    dnnl::memory::desc dst_md({m, n}, dt::f32, tag::ab);
    dnnl::memory::desc bias_md({1, n}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    dnnl::post_ops po;
    if (type == LinearType::S8) {
      if (part == 1) {
        std::vector<float> hi(scales);
        for (auto& v : hi) v *= 128.0f;
        attr.set_output_scales(1 << 1, hi);
        po.append_binary(dnnl::algorithm::binary_mul, dnnl::memory::desc({1, 1}, dt::f32, tag::ab));
      } else {
        attr.set_output_scales(1 << 1, scales);
        attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
        po.append_binary(dnnl::algorithm::binary_mul, dnnl::memory::desc({1, 1}, dt::f32, tag::ab));
        po.append_binary(dnnl::algorithm::binary_add, bias_md);
        if (split) po.append_sum(1.0f);
      }
    }
    if (part == 0) {
      switch (epilogue) {
        case Epilogue::None: break;
        case Epilogue::Gelu: po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f); break;
        case Epilogue::GeluTanh: po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.0f, 0.0f); break;
        case Epilogue::Relu: po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f); break;
        case Epilogue::Silu: po.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.0f, 0.0f); break;
      }
    }
    attr.set_post_ops(po);
    const bool prim_bias = type != LinearType::S8 && has_bias;
    auto desc = prim_bias ? dnnl::matmul::desc(src_md, wei_any, bias_md, dst_md) : dnnl::matmul::desc(src_md, wei_any, dst_md);
    dnnl::matmul::primitive_desc pd(desc, attr, engine());
    impl_name = pd.impl_info_str();
    const dnnl::memory* wm = nullptr;
    for (const auto& [d, mem] : packed) {
      if (d == pd.weights_desc()) wm = mem.get();
    }
    if (wm == nullptr) {
      // Our [n, k] row-major matrix is the logical [k, n] matrix in layout "ba".
      void* data = type == LinearType::F32 ? static_cast<void*>(wf.data())
                   : type == LinearType::BF16 ? static_cast<void*>(wb.data())
                                              : static_cast<void*>(ws.data());
      dnnl::memory user({{k, n}, wei_t, tag::ba}, engine(), data);
      auto mem = std::make_unique<dnnl::memory>(pd.weights_desc(), engine());
      dnnl::reorder(user, *mem).execute(stream(), user, *mem);
      stream().wait();
      wm = mem.get();
      packed.emplace_back(pd.weights_desc(), std::move(mem));
    }
    return prims.emplace(key, Prim{dnnl::matmul(pd), src_md, dst_md, wm}).first->second;
  }
};

Linear::Linear(const LinearWeights& w) : impl_(std::make_unique<Impl>()), type_(w.type), n_(w.n), k_(w.k) {
  if (w.n <= 0 || w.k <= 0) throw std::invalid_argument("Linear: n and k must be positive");
  const auto nk = static_cast<std::size_t>(w.n * w.k);
  impl_->type = w.type;
  impl_->epilogue = w.epilogue;
  impl_->split = w.type == LinearType::S8 && static_cast<int>(active_isa()) < static_cast<int>(Isa::Avx512Vnni);
  if (w.type == LinearType::S8) {
    if (w.w_s8 == nullptr || w.scales == nullptr) throw std::invalid_argument("Linear: int8 needs codes and scales");
    // CONDENSE_INT8_BACKEND=onednn keeps oneDNN where the AMX kernel would fit (A/B measurements).
    const char* backend = std::getenv("CONDENSE_INT8_BACKEND");
    const bool onednn_only = backend != nullptr && std::strcmp(backend, "onednn") == 0;
    if (active_isa() == Isa::Avx512Amx && AmxInt8::fits(w.n, w.k) && !onednn_only) {
      impl_->amx = std::make_unique<AmxInt8>(w.w_s8, w.n, w.k, w.scales, w.bias, w.epilogue);
      impl_->impl_name = "condense:amx_int8";
      return;
    }
    impl_->ws.assign(w.w_s8, w.w_s8 + nk);
    impl_->scales.assign(w.scales, w.scales + w.n);
  } else {
    if (w.w == nullptr) throw std::invalid_argument("Linear: float weights missing");
    if (w.type == LinearType::F32) {
      impl_->wf.assign(w.w, w.w + nk);
    } else {
      impl_->wb.resize(nk);
      to_bf16_ref(w.w, static_cast<int64_t>(nk), impl_->wb.data());
    }
  }
  impl_->bias.assign(static_cast<std::size_t>(w.n), 0.0f);
  if (w.bias) std::memcpy(impl_->bias.data(), w.bias, static_cast<std::size_t>(w.n) * sizeof(float));
  impl_->has_bias = w.bias != nullptr || w.type == LinearType::S8;
  impl_->bias_mem = dnnl::memory({{1, w.n}, dt::f32, tag::ab}, engine(), impl_->bias.data());
}

Linear::~Linear() = default;

void Linear::run(const float* x, int64_t m, float* y) const {
  if (type_ != LinearType::F32) throw std::invalid_argument("Linear::run: float input to a non-fp32 layer");
  if (m <= 0) return;
  const auto& p = impl_->get(m, n_, k_);
  dnnl::memory src(p.src, engine(), const_cast<float*>(x)), dst(p.dst, engine(), y);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *p.weights}, {DNNL_ARG_DST, dst}};
  if (impl_->has_bias) args.emplace(DNNL_ARG_BIAS, impl_->bias_mem);
  p.prim.execute(stream(), args);
  stream().wait();
}

void Linear::run(const uint16_t* x, int64_t m, float* y) const {
  if (type_ != LinearType::BF16) throw std::invalid_argument("Linear::run: bf16 input to a non-bf16 layer");
  if (m <= 0) return;
  const auto& p = impl_->get(m, n_, k_);
  dnnl::memory src(p.src, engine(), const_cast<uint16_t*>(x)), dst(p.dst, engine(), y);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *p.weights}, {DNNL_ARG_DST, dst}};
  if (impl_->has_bias) args.emplace(DNNL_ARG_BIAS, impl_->bias_mem);
  p.prim.execute(stream(), args);
  stream().wait();
}

void Linear::run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const {
  if (type_ != LinearType::S8) throw std::invalid_argument("Linear::run: uint8 input to a non-int8 layer");
  if (m <= 0) return;
  if (impl_->amx) {
    impl_->amx->run(x, m, sx, zx, y);
    return;
  }
  dnnl::memory scale({{1, 1}, dt::f32, tag::ab}, engine(), &sx);
  dnnl::memory zp({{1}, dt::s32, tag::x}, engine(), &zx);
  const uint8_t* lo = x;
  if (impl_->split) {
    thread_local std::vector<uint8_t> parts;
    const auto mk = static_cast<std::size_t>(m * k_);
    if (parts.size() < 2 * mk) parts.resize(2 * mk);
    uint8_t* l = parts.data();
    uint8_t* h = parts.data() + mk;
    for (std::size_t i = 0; i < mk; ++i) {
      l[i] = x[i] & 0x7f;
      h[i] = x[i] >> 7;
    }
    const auto& ph = impl_->get(m, n_, k_, 1);
    dnnl::memory src(ph.src, engine(), h), dst(ph.dst, engine(), y);
    ph.prim.execute(stream(), {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, *ph.weights},
                               {DNNL_ARG_DST, dst},
                               {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, scale}});
    lo = l;
  }
  const auto& p = impl_->get(m, n_, k_);
  dnnl::memory src(p.src, engine(), const_cast<uint8_t*>(lo)), dst(p.dst, engine(), y);
  p.prim.execute(stream(), {{DNNL_ARG_SRC, src},
                            {DNNL_ARG_WEIGHTS, *p.weights},
                            {DNNL_ARG_DST, dst},
                            {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zp},
                            {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, scale},
                            {DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, impl_->bias_mem}});
  stream().wait();
}

bool Linear::splits_int8() const { return impl_->split; }

std::string Linear::implementation() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->impl_name;
}

// ---- Int8Gemm: the quantize stage's int8 product, a Linear of type S8 ----

void int8_gemm_ref(const uint8_t* x, int64_t m, int64_t k, float sx, int32_t zx, const int8_t* w, int64_t n,
                   const float* sw, const float* bias, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t acc = 0;
      for (int64_t t = 0; t < k; ++t) acc += (static_cast<int32_t>(x[i * k + t]) - zx) * static_cast<int32_t>(w[j * k + t]);
      y[i * n + j] = sx * sw[j] * static_cast<float>(acc) + (bias ? bias[j] : 0.0f);
    }
  }
}

struct Int8Gemm::Impl {
  Linear linear;
};

Int8Gemm::Int8Gemm(const int8_t* w, int64_t n, int64_t k, const float* sw, const float* bias) : n_(n), k_(k) {
  if (n <= 0 || k <= 0) throw std::invalid_argument("Int8Gemm: n and k must be positive");
  LinearWeights lw;
  lw.type = LinearType::S8;
  lw.n = n;
  lw.k = k;
  lw.w_s8 = w;
  lw.scales = sw;
  lw.bias = bias;
  impl_.reset(new Impl{Linear(lw)});
}

Int8Gemm::~Int8Gemm() = default;

void Int8Gemm::run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const { impl_->linear.run(x, m, sx, zx, y); }

std::string Int8Gemm::implementation() const { return impl_->linear.implementation(); }

}  // namespace condense::kernels
