#include "condense/kernels/int8_gemm.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace condense::kernels {

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

namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
}  // namespace

struct Int8Gemm::Impl {
  struct Prim {
    dnnl::matmul prim;
    dnnl::memory::desc src, dst;
    const dnnl::memory* weights;
  };
  std::vector<int8_t> w;  // [n, k] row-major, as given
  std::vector<float> sw, bias;
  dnnl::memory bias_mem;
  std::mutex mu;
  std::map<int64_t, Prim> prims;                      // by m
  std::vector<std::pair<dnnl::memory::desc, std::unique_ptr<dnnl::memory>>> packed;  // weights per layout
  std::string impl_name;

  const Prim& get(int64_t m, int64_t n, int64_t k) {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = prims.find(m); it != prims.end()) return it->second;
    dnnl::memory::desc src_md({m, k}, dt::u8, tag::ab);
    dnnl::memory::desc wei_any({k, n}, dt::s8, tag::any);
    dnnl::memory::desc dst_md({m, n}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, sw);
    attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::post_ops po;
    po.append_binary(dnnl::algorithm::binary_mul, dnnl::memory::desc({1, 1}, dt::f32, tag::ab));
    po.append_binary(dnnl::algorithm::binary_add, dnnl::memory::desc({1, n}, dt::f32, tag::ab));
    attr.set_post_ops(po);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any, dst_md), attr, engine());
    impl_name = pd.impl_info_str();
    const dnnl::memory* wm = nullptr;
    for (const auto& [desc, mem] : packed) {
      if (desc == pd.weights_desc()) wm = mem.get();
    }
    if (wm == nullptr) {
      // Our [n, k] row-major matrix is the logical [k, n] matrix in layout "ba".
      dnnl::memory user({{k, n}, dt::s8, tag::ba}, engine(), w.data());
      auto mem = std::make_unique<dnnl::memory>(pd.weights_desc(), engine());
      dnnl::stream s(engine());
      dnnl::reorder(user, *mem).execute(s, user, *mem);
      s.wait();
      wm = mem.get();
      packed.emplace_back(pd.weights_desc(), std::move(mem));
    }
    return prims.emplace(m, Prim{dnnl::matmul(pd), src_md, dst_md, wm}).first->second;
  }
};

Int8Gemm::Int8Gemm(const int8_t* w, int64_t n, int64_t k, const float* sw, const float* bias)
    : impl_(std::make_unique<Impl>()), n_(n), k_(k) {
  if (n <= 0 || k <= 0) throw std::invalid_argument("Int8Gemm: n and k must be positive");
  impl_->w.assign(w, w + n * k);
  impl_->sw.assign(sw, sw + n);
  impl_->bias.assign(static_cast<std::size_t>(n), 0.0f);
  if (bias) std::memcpy(impl_->bias.data(), bias, static_cast<std::size_t>(n) * sizeof(float));
  impl_->bias_mem = dnnl::memory({{1, n}, dt::f32, tag::ab}, engine(), impl_->bias.data());
}

Int8Gemm::~Int8Gemm() = default;

void Int8Gemm::run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const {
  if (m <= 0) return;
  const auto& p = impl_->get(m, n_, k_);
  dnnl::memory src(p.src, engine(), const_cast<uint8_t*>(x));
  dnnl::memory dst(p.dst, engine(), y);
  dnnl::memory scale({{1, 1}, dt::f32, tag::ab}, engine(), &sx);
  dnnl::memory zp({{1}, dt::s32, tag::x}, engine(), &zx);
  dnnl::stream s(engine());
  p.prim.execute(s, {{DNNL_ARG_SRC, src},
                     {DNNL_ARG_WEIGHTS, *p.weights},
                     {DNNL_ARG_DST, dst},
                     {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zp},
                     {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, scale},
                     {DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, impl_->bias_mem}});
  s.wait();
}

std::string Int8Gemm::implementation() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->impl_name;
}

}  // namespace condense::kernels
