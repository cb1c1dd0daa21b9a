// Linear layers at BERT-base-384 shapes: fp32 (LibTorch/MKL), bf16 (LibTorch/oneDNN) and int8
// (kernels::Int8Gemm: oneDNN, or condense's AMX tile kernel where the CPU has AMX; activation
// quantization included), so the choice of int8 backend and the bf16 path rest on a measurement.
// CONDENSE_INT8_BACKEND=onednn keeps Int8Gemm and Linear on oneDNN for an A/B on AMX machines.
// Build: cmake --build build --target linear_bench; run: build/linear_bench --benchmark_counters_tabular=true. Counter GOPS = 2·M·N·K / time.
#include <ATen/core/dispatch/Dispatcher.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/linear.h"

namespace {

// Products condense runs itself (int8 on AMX tiles) spread over LibTorch's threads, as in the runtime.
const bool kParallel = [] {
  condense::kernels::set_parallel_for(
      [](int64_t n, const std::function<void(int64_t, int64_t)>& body) { at::parallel_for(0, n, 1, body); });
  return true;
}();

void shape_args(benchmark::internal::Benchmark* b) {
  for (int64_t m : {32, 128, 4096}) {
    for (auto [k, n] : {std::pair<int64_t, int64_t>{384, 384}, {384, 1536}, {1536, 384}}) b->Args({m, k, n});
  }
  b->ArgNames({"M", "K", "N"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Dynamic activation quantization as the int8 kernel does it: the batch's range, then uint8 codes.
std::pair<float, int32_t> quantize_input(const torch::Tensor& x, torch::Tensor& xq) {
  auto mm = torch::aminmax(x);
  const float lo = std::min(0.0f, std::get<0>(mm).item<float>()), hi = std::max(0.0f, std::get<1>(mm).item<float>());
  const float scale = (hi - lo) / 255.0f;
  const int32_t zp = static_cast<int32_t>(std::nearbyint(-lo / scale));
  condense::kernels::quantize_u8(x.data_ptr<float>(), x.numel(), 1 / scale, zp, xq.data_ptr<uint8_t>());
  return {scale, zp};
}

void set_counters(benchmark::State& s, int64_t m, int64_t k, int64_t n) {
  s.counters["GOPS"] = benchmark::Counter(2.0 * m * n * k * static_cast<double>(s.iterations()) / 1e9,
                                          benchmark::Counter::kIsRate);
}

void BM_Fp32(benchmark::State& s) {
  const int64_t m = s.range(0), k = s.range(1), n = s.range(2);
  torch::NoGradGuard g;
  auto x = torch::randn({m, k}), w = torch::randn({n, k}) * 0.05, b = torch::randn({n});
  for (auto _ : s) benchmark::DoNotOptimize(torch::nn::functional::linear(x, w, b));
  set_counters(s, m, k, n);
}

// The runtime's fp32 Linear (oneDNN matmul, weights packed once), beside LibTorch's (MKL) above.
void BM_Fp32Linear(benchmark::State& s) {
  const int64_t m = s.range(0), k = s.range(1), n = s.range(2);
  namespace ck = condense::kernels;
  auto x = torch::randn({m, k}), w = torch::randn({n, k}) * 0.05, b = torch::randn({n});
  ck::LinearWeights lw;
  lw.n = n;
  lw.k = k;
  lw.w = w.data_ptr<float>();
  lw.bias = b.data_ptr<float>();
  ck::Linear lin(lw);
  auto y = torch::empty({m, n});
  for (auto _ : s) {
    lin.run(x.data_ptr<float>(), m, y.data_ptr<float>());
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  s.SetLabel(lin.implementation());
  set_counters(s, m, k, n);
}

void BM_Bf16(benchmark::State& s) {  // input conversion included, as the bf16 kernel does it per call
  const int64_t m = s.range(0), k = s.range(1), n = s.range(2);
  torch::NoGradGuard g;
  auto x = torch::randn({m, k});
  auto w = (torch::randn({n, k}) * 0.05).to(torch::kBFloat16), b = torch::randn({n}).to(torch::kBFloat16);
  for (auto _ : s) benchmark::DoNotOptimize(torch::nn::functional::linear(x.to(torch::kBFloat16), w, b).to(torch::kFloat32));
  set_counters(s, m, k, n);
}

void BM_Int8(benchmark::State& s) {  // min/max, quantization to uint8 and the GEMM, as the int8 kernel runs
  const int64_t m = s.range(0), k = s.range(1), n = s.range(2);
  torch::NoGradGuard g;
  auto x = torch::randn({m, k});
  auto w = torch::randint(-127, 128, {n, k}, torch::kInt8);
  auto sw = torch::full({n}, 0.01f), b = torch::randn({n});
  condense::kernels::Int8Gemm gemm(w.data_ptr<int8_t>(), n, k, sw.data_ptr<float>(), b.data_ptr<float>());
  auto xq = torch::empty({m, k}, torch::kUInt8);
  auto y = torch::empty({m, n});
  for (auto _ : s) {
    const auto [scale, zp] = quantize_input(x, xq);
    gemm.run(xq.data_ptr<uint8_t>(), m, scale, zp, y.data_ptr<float>());
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  s.SetLabel(gemm.implementation());
  set_counters(s, m, k, n);
}

void BM_Int8Torch(benchmark::State& s) {  // the same through LibTorch's oneDNN (onednn::qlinear_pointwise)
  const int64_t m = s.range(0), k = s.range(1), n = s.range(2);
  torch::NoGradGuard g;
  auto x = torch::randn({m, k});
  auto w = torch::randint(-127, 128, {n, k}, torch::kInt8);
  auto sw = torch::full({n}, 0.01f), b = torch::randn({n}), zero = torch::zeros({n}, torch::kLong);
  auto& d = c10::Dispatcher::singleton();
  torch::jit::Stack pre{w, c10::IValue()};
  d.findSchemaOrThrow("onednn::qlinear_prepack", "").callBoxed(&pre);
  auto packed = pre[0].toTensor();
  auto op = d.findSchemaOrThrow("onednn::qlinear_pointwise", "");
  auto xq = torch::empty({m, k}, torch::kUInt8);
  for (auto _ : s) {
    const auto [scale, zp] = quantize_input(x, xq);
    torch::jit::Stack st{xq, static_cast<double>(scale), static_cast<int64_t>(zp), packed, sw, zero,
                         c10::optional<torch::Tensor>(b), 1.0, int64_t{0}, c10::optional<at::ScalarType>(at::kFloat),
                         std::string("none"), c10::List<std::optional<c10::Scalar>>(), std::string("")};
    op.callBoxed(&st);
    benchmark::DoNotOptimize(st[0].toTensor().data_ptr<float>());
  }
  set_counters(s, m, k, n);
}

// The products alone (codes ready, no quantization): the FFN input's with and without the fused
// erf-GELU epilogue, to price it on the 4x wider output (arg E: 0 none, 1 GELU), the FFN
// output's and the fused QKV's.
void BM_Int8Epilogue(benchmark::State& s) {
  const int64_t m = s.range(0), k = s.range(1), n = s.range(2);
  namespace ck = condense::kernels;
  auto w = torch::randint(-127, 128, {n, k}, torch::kInt8);
  auto sw = torch::full({n}, 0.01f), b = torch::randn({n});
  ck::LinearWeights lw;
  lw.type = ck::LinearType::S8;
  lw.n = n;
  lw.k = k;
  lw.w_s8 = w.data_ptr<int8_t>();
  lw.scales = sw.data_ptr<float>();
  lw.bias = b.data_ptr<float>();
  lw.epilogue = s.range(3) ? ck::Epilogue::Gelu : ck::Epilogue::None;
  ck::Linear lin(lw);
  auto xq = torch::randint(0, 256, {m, k}, torch::kUInt8);
  auto y = torch::empty({m, n});
  for (auto _ : s) {
    lin.run(xq.data_ptr<uint8_t>(), m, 0.02f, 128, y.data_ptr<float>());
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  s.SetLabel(lin.implementation());
  set_counters(s, m, k, n);
}

BENCHMARK(BM_Fp32)->Apply(shape_args);
BENCHMARK(BM_Fp32Linear)->Apply(shape_args);
BENCHMARK(BM_Int8Torch)->Apply(shape_args);
BENCHMARK(BM_Bf16)->Apply(shape_args);
BENCHMARK(BM_Int8)->Apply(shape_args);
BENCHMARK(BM_Int8Epilogue)
    ->Args({4096, 384, 1536, 0})
    ->Args({4096, 384, 1536, 1})
    ->Args({4096, 1536, 384, 0})
    ->Args({4096, 384, 1152, 0})
    ->ArgNames({"M", "K", "N", "E"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
