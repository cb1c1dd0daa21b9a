// Weight quantizers, packing and activation observers (quantize.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "condense/core/error.h"
#include "condense/kernels/pack.h"
#include "condense/quantize/quantize.h"

namespace condense::quantize {

namespace {

// Stored scales: float32, except group-wise, where fp16 halves the per-group overhead that
// dominates at 2 bits (Q-BERT's group-wise scheme stores one scale per group, too).
torch::ScalarType scale_dtype(const Scheme& s) {
  return s.granularity == Granularity::Group ? torch::kFloat16 : torch::kFloat32;
}

// The weight as [groups, elements per group]; groups are contiguous in row-major order.
torch::Tensor as_groups(const torch::Tensor& w, const Scheme& s) {
  CONDENSE_CHECK(w.dim() == 2, "quantization needs a matrix, found {} dimensions", w.dim());
  switch (s.granularity) {
    case Granularity::PerTensor: return w.reshape({1, -1});
    case Granularity::PerChannel: return w.reshape({w.size(0), -1});
    case Granularity::Group:
      CONDENSE_CHECK(w.size(1) % s.group_size == 0, "group size {} does not divide the row length {} of a [{}, {}] weight",
                     s.group_size, w.size(1), w.size(0), w.size(1));
      return w.reshape({-1, s.group_size});
  }
  return w;
}

int64_t groups_of(const std::vector<int64_t>& shape, const Scheme& s) {
  switch (s.granularity) {
    case Granularity::PerTensor: return 1;
    case Granularity::PerChannel: return shape[0];
    case Granularity::Group: return shape[0] * shape[1] / s.group_size;
  }
  return 1;
}

// Codes before packing (uint8 [G, n], int8 for symmetric uniform 8-bit) and their parameters.
struct Encoded {
  torch::Tensor codes, scale, zero_point, codebook;
};

torch::Tensor pow2_ceil(const torch::Tensor& scale) { return torch::pow(2.0, torch::ceil(torch::log2(scale))); }

Encoded encode_groups(const torch::Tensor& g, const Scheme& s);

// The range each group is encoded with: the groups clipped to [-t, t] (symmetric) or scaled
// toward zero (asymmetric) when the scheme asks for a percentile or the MSE-optimal clipping.
torch::Tensor clipped(const torch::Tensor& g, const Scheme& s);

Encoded encode(const torch::Tensor& w_in, const Scheme& s) {
  auto g = as_groups(w_in.detach().to(torch::kFloat32), s);
  if (s.range == "minmax" || s.bits == 1 || s.method == Method::KMeans) return encode_groups(g, s);
  return encode_groups(clipped(g, s), s);
}

torch::Tensor decode(const Encoded& e, const Scheme& s);

torch::Tensor clipped(const torch::Tensor& g, const Scheme& s) {
  auto lo = g.amin(1, true), hi = g.amax(1, true);
  if (s.range == "percentile") {
    auto t = std::get<0>(g.abs().sort(1)).select(1, std::max<int64_t>(0, static_cast<int64_t>(0.999 * (g.size(1) - 1))))
                 .unsqueeze(1);
    return torch::max(torch::min(g, t), -t);
  }
  // MSE: candidate ranges 100 %, 97.5 %, ..., 50 % of each group's own; keep, per group, the one
  // whose quantize-dequantize error is smallest (the clipping itself counts as error).
  torch::Tensor best_err, best_c;
  for (int i = 0; i <= 20; ++i) {
    const double c = 1.0 - 0.025 * i;
    auto cg = torch::max(torch::min(g, hi * c), lo * c);
    Scheme plain = s;
    plain.range = "minmax";
    auto err = (decode(encode_groups(cg, plain), plain) - g).pow(2).sum(1, true);
    if (i == 0) {
      best_err = err;
      best_c = torch::ones_like(err);
    } else {
      auto better = err < best_err;
      best_err = torch::where(better, err, best_err);
      best_c = torch::where(better, torch::full_like(err, c), best_c);
    }
  }
  return torch::max(torch::min(g, hi * best_c), lo * best_c);
}

Encoded encode_groups(const torch::Tensor& g, const Scheme& s) {
  Encoded e;
  const int b = s.bits;
  // Codes are computed against the scale as stored (fp16 for groups), so that dequantization
  // reproduces exactly the levels the rounding chose; an fp16 scale is nudged up by one part in
  // 1024 (more than its rounding error) so the levels still cover the group's range.
  auto stored = [&](const torch::Tensor& scale) {
    if (scale_dtype(s) == torch::kFloat32) return scale;
    return (scale * (1 + 1.0 / 1024)).to(torch::kFloat16).to(torch::kFloat32);
  };
  switch (s.method) {
    case Method::Uniform:
    case Method::PowerOfTwo: {
      if (b == 1) {  // binary: sign and the mean magnitude, which minimises the L2 error (XNOR-Net)
        e.scale = stored(g.abs().mean(1));
        e.codes = (g >= 0).to(torch::kUInt8);
        break;
      }
      if (s.symmetric) {
        const double qmax = std::pow(2.0, b - 1) - 1;  // restricted range: 8-bit [-127, 127], 2-bit ternary
        auto scale = g.abs().amax(1) / qmax;
        scale = torch::where(scale > 0, scale, torch::ones_like(scale));
        scale = stored(s.method == Method::PowerOfTwo ? pow2_ceil(scale) : scale);
        auto q = torch::clamp(torch::round(g / scale.unsqueeze(1)), -qmax, qmax);
        e.scale = scale;
        e.codes = b == 8 ? q.to(torch::kInt8) : (q + std::pow(2.0, b - 1)).to(torch::kUInt8);
      } else {
        const double levels = std::pow(2.0, b) - 1;
        auto lo = torch::clamp_max(g.amin(1), 0), hi = torch::clamp_min(g.amax(1), 0);
        auto scale = (hi - lo) / levels;
        scale = torch::where(scale > 0, scale, torch::ones_like(scale));
        scale = stored(s.method == Method::PowerOfTwo ? pow2_ceil(scale) : scale);
        auto zp = torch::clamp(torch::round(-lo / scale), 0, levels);
        auto q = torch::clamp(torch::round(g / scale.unsqueeze(1)) + zp.unsqueeze(1), 0, levels);
        e.scale = scale;
        e.zero_point = zp.to(torch::kUInt8);
        e.codes = q.to(torch::kUInt8);
      }
      break;
    }
    case Method::Log: {
      // Code: sign bit on top, magnitude index j below; j = 0 is zero, j ≥ 1 is scale·2^-(j-1).
      const int64_t jmax = (int64_t{1} << (b - 1)) - 1;
      auto scale = g.abs().amax(1);
      scale = stored(torch::where(scale > 0, scale, torch::ones_like(scale)));
      auto a = g.abs() / scale.unsqueeze(1);
      auto j = torch::clamp(torch::round(-torch::log2(torch::clamp_min(a, 1e-30))) + 1, 1, static_cast<double>(jmax));
      const double smallest = std::pow(2.0, -static_cast<double>(jmax - 1));
      j = torch::where(a < smallest / 2, torch::zeros_like(j), j);
      e.scale = scale;
      e.codes = ((g < 0).to(torch::kInt64) * (int64_t{1} << (b - 1)) + j.to(torch::kInt64)).to(torch::kUInt8);
      break;
    }
    case Method::KMeans: {
      // Lloyd's algorithm in one dimension with Deep Compression's linear initialisation; the
      // nearest centroid is a binary search among the midpoints of the sorted centroids.
      const int64_t k = int64_t{1} << b;
      auto lo = g.amin(1, true), hi = g.amax(1, true);
      auto c = lo + (hi - lo) * torch::linspace(0, 1, k).unsqueeze(0);
      torch::Tensor idx;
      for (int it = 0; it < 20; ++it) {
        c = std::get<0>(c.sort(1));
        auto mid = (c.slice(1, 0, k - 1) + c.slice(1, 1, k)) / 2;
        idx = torch::searchsorted(mid.contiguous(), g.contiguous());
        auto sums = torch::zeros_like(c).scatter_add_(1, idx, g);
        auto counts = torch::zeros_like(c).scatter_add_(1, idx, torch::ones_like(g));
        auto next = torch::where(counts > 0, sums / counts.clamp_min(1), c);
        const bool done = torch::allclose(next, c, 0, 0);
        c = next;
        if (done) break;
      }
      c = std::get<0>(c.sort(1));
      auto mid = (c.slice(1, 0, k - 1) + c.slice(1, 1, k)) / 2;
      e.codes = torch::searchsorted(mid.contiguous(), g.contiguous()).to(torch::kUInt8);
      e.codebook = c.contiguous();
      break;
    }
    case Method::Float16:
    case Method::BFloat16: fail("encode: float methods have no codes");
  }
  if (e.scale.defined()) e.scale = e.scale.to(scale_dtype(s));
  return e;
}

// float32 [G, n] from unpacked codes.
torch::Tensor decode(const Encoded& e, const Scheme& s) {
  const int b = s.bits;
  switch (s.method) {
    case Method::Uniform:
    case Method::PowerOfTwo: {
      auto scale = e.scale.to(torch::kFloat32).unsqueeze(1);
      auto q = e.codes.to(torch::kFloat32);
      if (b == 1) return (2 * q - 1) * scale;
      if (s.symmetric) return (b == 8 ? q : q - std::pow(2.0, b - 1)) * scale;
      return (q - e.zero_point.to(torch::kFloat32).unsqueeze(1)) * scale;
    }
    case Method::Log: {
      auto code = e.codes.to(torch::kInt64);
      auto sign = 1 - 2 * torch::bitwise_right_shift(code, b - 1).to(torch::kFloat32);
      auto j = torch::bitwise_and(code, (int64_t{1} << (b - 1)) - 1).to(torch::kFloat32);
      auto mag = torch::where(j > 0, torch::pow(2.0, 1 - j), torch::zeros_like(j));
      return sign * mag * e.scale.to(torch::kFloat32).unsqueeze(1);
    }
    case Method::KMeans: return torch::gather(e.codebook, 1, e.codes.to(torch::kInt64));
    default: fail("decode: float methods have no codes");
  }
}

torch::Tensor pack(const torch::Tensor& codes, int bits) {
  auto flat = codes.contiguous().view(-1);
  auto out = torch::empty({static_cast<int64_t>(kernels::packed_bytes(flat.numel(), bits))}, torch::kUInt8);
  kernels::pack_bits_ref(flat.data_ptr<uint8_t>(), flat.numel(), bits, out.data_ptr<uint8_t>());
  return out;
}

torch::Tensor unpack(const torch::Tensor& packed, int64_t n, int bits) {
  auto out = torch::empty({n}, torch::kUInt8);
  kernels::unpack_bits_ref(packed.contiguous().data_ptr<uint8_t>(), n, bits, out.data_ptr<uint8_t>());
  return out;
}

}  // namespace

// ---- names ----

std::string to_string(Method m) {
  switch (m) {
    case Method::Uniform: return "uniform";
    case Method::PowerOfTwo: return "pow2";
    case Method::Log: return "log";
    case Method::KMeans: return "kmeans";
    case Method::Float16: return "fp16";
    case Method::BFloat16: return "bf16";
  }
  return "?";
}

std::string to_string(Granularity g) {
  switch (g) {
    case Granularity::PerTensor: return "tensor";
    case Granularity::PerChannel: return "channel";
    case Granularity::Group: return "group";
  }
  return "?";
}

Method parse_method(const std::string& name) {
  for (auto m : {Method::Uniform, Method::PowerOfTwo, Method::Log, Method::KMeans, Method::Float16, Method::BFloat16}) {
    if (name == to_string(m)) return m;
  }
  fail("unknown quantization method '{}' (expected uniform, pow2, log, kmeans, fp16 or bf16)", name);
}

Granularity parse_granularity(const std::string& name) {
  for (auto g : {Granularity::PerTensor, Granularity::PerChannel, Granularity::Group}) {
    if (name == to_string(g)) return g;
  }
  fail("unknown granularity '{}' (expected tensor, channel or group)", name);
}

std::string to_string(Observer o) {
  switch (o) {
    case Observer::MinMax: return "minmax";
    case Observer::MovingAverage: return "ema";
    case Observer::Percentile: return "percentile";
    case Observer::Mse: return "mse";
    case Observer::Entropy: return "entropy";
  }
  return "?";
}

Observer parse_observer(const std::string& name) {
  for (auto o : {Observer::MinMax, Observer::MovingAverage, Observer::Percentile, Observer::Mse, Observer::Entropy}) {
    if (name == to_string(o)) return o;
  }
  fail("unknown observer '{}' (expected minmax, ema, percentile, mse or entropy)", name);
}

std::string to_string(Activations a) {
  switch (a) {
    case Activations::None: return "none";
    case Activations::Dynamic: return "dynamic";
    case Activations::Static: return "static";
  }
  return "?";
}

Activations parse_activations(const std::string& name) {
  for (auto a : {Activations::None, Activations::Dynamic, Activations::Static}) {
    if (name == to_string(a)) return a;
  }
  fail("unknown activation mode '{}' (expected none, dynamic or static)", name);
}

// ---- Scheme ----

void Scheme::validate(const std::string& where) const {
  if (is_float()) {
    CONDENSE_CHECK(bits == 16, "{}: {} stores 16 bits, found bits = {}", where, to_string(method), bits);
    return;
  }
  CONDENSE_CHECK(bits == 1 || bits == 2 || bits == 4 || bits == 8, "{}: bits must be 1, 2, 4 or 8, found {}", where,
                 bits);
  CONDENSE_CHECK(method != Method::Log || (symmetric && bits >= 2),
                 "{}: log quantization is symmetric (a sign bit) and needs at least 2 bits", where);
  CONDENSE_CHECK(bits != 1 || method != Method::PowerOfTwo || symmetric, "{}: 1-bit weights are symmetric (binary)",
                 where);
  CONDENSE_CHECK(bits != 1 || symmetric || method == Method::KMeans,
                 "{}: 1-bit uniform weights are binary and symmetric; use --symmetric", where);
  CONDENSE_CHECK(granularity != Granularity::Group || group_size > 0, "{}: group_size must be positive, found {}",
                 where, group_size);
  CONDENSE_CHECK(range == "minmax" || range == "mse" || range == "percentile",
                 "{}: range must be minmax, mse or percentile, found '{}'", where, range);
}

std::string Scheme::name() const {
  if (is_float()) return to_string(method);
  std::string n = fmt::format("int{} {}", bits, to_string(method));
  if (method == Method::Uniform || method == Method::PowerOfTwo) n += symmetric ? " sym" : " asym";
  if (range != "minmax") n += " " + range;
  if (granularity == Granularity::Group) return n + fmt::format(" group{}", group_size);
  return n + (granularity == Granularity::PerChannel ? " per-channel" : " per-tensor");
}

nlohmann::json Scheme::to_json() const {
  nlohmann::json j{{"bits", bits}, {"method", to_string(method)}, {"symmetric", symmetric},
                   {"granularity", to_string(granularity)}};
  if (granularity == Granularity::Group) j["group_size"] = group_size;
  if (range != "minmax") j["range"] = range;
  return j;
}

Scheme Scheme::from_json(const nlohmann::json& j, const std::string& where) {
  CONDENSE_CHECK(j.is_object(), "{}: expected an object", where);
  Scheme s;
  try {
    s.bits = j.at("bits").get<int>();
    s.method = parse_method(j.at("method").get<std::string>());
    s.symmetric = j.at("symmetric").get<bool>();
    s.granularity = parse_granularity(j.at("granularity").get<std::string>());
    if (s.granularity == Granularity::Group) s.group_size = j.at("group_size").get<int64_t>();
    s.range = j.value("range", std::string("minmax"));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", where, e.what());
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  s.validate(where);
  return s;
}

// ---- QTensor ----

int64_t QTensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

int64_t QTensor::num_groups() const { return scheme.is_float() ? 0 : groups_of(shape, scheme); }

int64_t QTensor::nbytes() const {
  int64_t n = 0;
  for (const auto* t : {&codes, &scale, &zero_point, &codebook}) {
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  }
  return n;
}

void QTensor::validate(const std::string& where) const {
  scheme.validate(where);
  CONDENSE_CHECK(shape.size() == 2 && shape[0] > 0 && shape[1] > 0, "{}: quantized weights must be matrices", where);
  CONDENSE_CHECK(codes.defined(), "{}: codes are missing", where);
  if (scheme.is_float()) {
    const auto want = scheme.method == Method::Float16 ? torch::kFloat16 : torch::kBFloat16;
    CONDENSE_CHECK(codes.scalar_type() == want && codes.sizes() == c10::IntArrayRef(shape),
                   "{}: expected {} values of shape [{}, {}]", where, to_string(scheme.method), shape[0], shape[1]);
    return;
  }
  const int64_t g = num_groups();
  CONDENSE_CHECK(scheme.granularity != Granularity::Group || shape[1] % scheme.group_size == 0,
                 "{}: group_size {} does not divide the row length {}", where, scheme.group_size, shape[1]);
  if (scheme.bits == 8) {
    const auto want = scheme.method == Method::Uniform && scheme.symmetric ? torch::kInt8 : torch::kUInt8;
    CONDENSE_CHECK(codes.scalar_type() == want && codes.sizes() == c10::IntArrayRef(shape),
                   "{}: 8-bit codes must be {} of shape [{}, {}], found {} {}", where, c10::toString(want), shape[0],
                   shape[1], c10::toString(codes.scalar_type()), codes.sizes());
  } else {
    const auto want = static_cast<int64_t>(kernels::packed_bytes(numel(), scheme.bits));
    CONDENSE_CHECK(codes.scalar_type() == torch::kUInt8 && codes.dim() == 1 && codes.size(0) == want,
                   "{}: {}-bit codes of {} weights need {} packed bytes, found {}", where, scheme.bits, numel(), want,
                   codes.numel());
  }
  if (scheme.method == Method::KMeans) {
    CONDENSE_CHECK(codebook.defined() && codebook.scalar_type() == torch::kFloat32 &&
                       codebook.sizes() == c10::IntArrayRef({g, int64_t{1} << scheme.bits}),
                   "{}: codebook must be float32 [{}, {}]", where, g, int64_t{1} << scheme.bits);
    CONDENSE_CHECK(torch::isfinite(codebook).all().item<bool>(), "{}: codebook contains NaN or Inf", where);
    return;
  }
  CONDENSE_CHECK(scale.defined() && scale.scalar_type() == scale_dtype(scheme) && scale.dim() == 1 &&
                     scale.size(0) == g,
                 "{}: scale must be {} [{}]", where, c10::toString(scale_dtype(scheme)), g);
  CONDENSE_CHECK(torch::isfinite(scale).all().item<bool>() && (scale >= 0).all().item<bool>(),
                 "{}: scale contains NaN, Inf or negative values", where);
  const bool asym = !scheme.symmetric && scheme.bits > 1;
  if (asym) {
    CONDENSE_CHECK(zero_point.defined() && zero_point.scalar_type() == torch::kUInt8 && zero_point.dim() == 1 &&
                       zero_point.size(0) == g,
                   "{}: zero_point must be uint8 [{}]", where, g);
    CONDENSE_CHECK(zero_point.max().item<int64_t>() < (int64_t{1} << scheme.bits),
                   "{}: zero_point exceeds {} bits", where, scheme.bits);
  }
}

QTensor quantize_tensor(const torch::Tensor& w, const Scheme& s) {
  s.validate();
  CONDENSE_CHECK(w.dim() == 2, "quantization needs a matrix, found {} dimensions", w.dim());
  CONDENSE_CHECK(torch::isfinite(w).all().item<bool>(), "cannot quantize a weight with NaN or Inf");
  QTensor q;
  q.scheme = s;
  q.shape = {w.size(0), w.size(1)};
  torch::NoGradGuard guard;
  if (s.is_float()) {
    q.codes = w.detach().to(s.method == Method::Float16 ? torch::kFloat16 : torch::kBFloat16).contiguous();
    return q;
  }
  auto e = encode(w, s);
  q.codes = s.bits == 8 ? e.codes.reshape({w.size(0), w.size(1)}).contiguous() : pack(e.codes, s.bits);
  q.scale = e.scale.defined() ? e.scale.contiguous() : e.scale;
  q.zero_point = e.zero_point;
  q.codebook = e.codebook;
  return q;
}

torch::Tensor QTensor::dequantize() const {
  torch::NoGradGuard guard;
  if (scheme.is_float()) return codes.to(torch::kFloat32);
  Encoded e{codes, scale, zero_point, codebook};
  const int64_t g = num_groups();
  e.codes = scheme.bits == 8 ? codes.reshape({g, -1}) : unpack(codes, numel(), scheme.bits).reshape({g, -1});
  return decode(e, scheme).reshape({shape[0], shape[1]});
}

torch::Tensor fake_quantize(const torch::Tensor& w, const Scheme& s) {
  torch::Tensor dq;
  {
    torch::NoGradGuard guard;
    if (s.is_float()) {
      dq = w.detach().to(s.method == Method::Float16 ? torch::kFloat16 : torch::kBFloat16).to(w.scalar_type());
    } else {
      dq = decode(encode(w, s), s).reshape(w.sizes());
    }
  }
  return w + (dq - w).detach();
}

// ---- activations ----

std::pair<double, int64_t> ActRange::params() const {
  if (symmetric) {
    const double m = std::max(std::abs(lo), std::abs(hi));
    return {m > 0 ? m / 127.0 : 1.0, 0};
  }
  const double l = std::min(lo, 0.0), h = std::max(hi, 0.0);
  const double scale = h > l ? (h - l) / 255.0 : 1.0;
  return {scale, std::clamp<int64_t>(std::llround(-l / scale), 0, 255)};
}

torch::Tensor fake_quantize_activation(const torch::Tensor& x, const ActRange& r) {
  const auto [scale, zp] = r.params();
  // Symmetric: int8 [-128, 127], which the integer path runs as uint8 with zero point 128.
  return r.symmetric ? torch::fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)
                     : torch::fake_quantize_per_tensor_affine(x, scale, zp, 0, 255);
}

RangeObserver::RangeObserver(Observer kind, bool symmetric, double percentile)
    : kind_(kind), symmetric_(symmetric), percentile_(percentile) {
  CONDENSE_CHECK(percentile > 50 && percentile <= 100, "percentile must be in (50, 100], found {}", percentile);
}

void RangeObserver::observe(const torch::Tensor& x_in) {
  torch::NoGradGuard guard;
  auto x = x_in.detach().to(torch::kFloat32).reshape(-1);
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  if (kind_ == Observer::MovingAverage && seen_) {
    constexpr double kMomentum = 0.9;
    lo_ = kMomentum * lo_ + (1 - kMomentum) * lo;
    hi_ = kMomentum * hi_ + (1 - kMomentum) * hi;
  } else {
    lo_ = seen_ ? std::min(lo_, lo) : lo;
    hi_ = seen_ ? std::max(hi_, hi) : hi;
  }
  seen_ = true;
  if (kind_ == Observer::Percentile || kind_ == Observer::Mse || kind_ == Observer::Entropy) {
    constexpr int64_t kPerBatch = 1 << 16, kTotal = 1 << 21;
    if (sampled_ >= kTotal) return;
    const int64_t step = std::max<int64_t>(1, x.numel() / kPerBatch);
    auto s = x.slice(0, 0, x.numel(), step).clone();
    sampled_ += s.numel();
    samples_.push_back(s);
  }
}

namespace {

// KL(P‖Q) thresholds of TensorRT's entropy calibration (Migacz 2017) on a histogram of |x|:
// for each candidate threshold, P is the clipped histogram (outliers folded into the last bin)
// and Q the same merged into 128 levels and expanded back over the non-empty bins.
double entropy_threshold(const torch::Tensor& a, double absmax) {
  constexpr int kBins = 2048, kLevels = 128;
  auto hist_t = torch::histc(a.abs(), kBins, 0, absmax).to(torch::kFloat64).contiguous();
  std::vector<double> hist(hist_t.data_ptr<double>(), hist_t.data_ptr<double>() + kBins);
  const double width = absmax / kBins;
  double best_kl = std::numeric_limits<double>::infinity();
  int best_i = kBins;
  for (int i = kLevels; i <= kBins; i += 16) {
    std::vector<double> p(hist.begin(), hist.begin() + i);
    for (int k = i; k < kBins; ++k) p[static_cast<std::size_t>(i - 1)] += hist[static_cast<std::size_t>(k)];
    std::vector<double> q(static_cast<std::size_t>(i), 0.0);
    const double per = static_cast<double>(i) / kLevels;
    for (int l = 0; l < kLevels; ++l) {
      const int b0 = static_cast<int>(std::floor(l * per)), b1 = std::max(b0 + 1, static_cast<int>(std::floor((l + 1) * per)));
      double sum = 0;
      int nonzero = 0;
      for (int k = b0; k < b1 && k < i; ++k) {
        sum += hist[static_cast<std::size_t>(k)];
        nonzero += hist[static_cast<std::size_t>(k)] > 0;
      }
      for (int k = b0; k < b1 && k < i; ++k) {
        if (hist[static_cast<std::size_t>(k)] > 0) q[static_cast<std::size_t>(k)] = sum / nonzero;
      }
    }
    double ps = 0, qs = 0;
    for (int k = 0; k < i; ++k) { ps += p[static_cast<std::size_t>(k)]; qs += q[static_cast<std::size_t>(k)]; }
    if (ps <= 0 || qs <= 0) continue;
    double kl = 0;
    for (int k = 0; k < i; ++k) {
      const double pk = p[static_cast<std::size_t>(k)] / ps, qk = q[static_cast<std::size_t>(k)] / qs;
      if (pk > 0) kl += pk * std::log(pk / std::max(qk, 1e-12));
    }
    if (kl < best_kl) { best_kl = kl; best_i = i; }
  }
  return (best_i + 0.5) * width;
}

}  // namespace

ActRange RangeObserver::range() const {
  CONDENSE_CHECK(seen_, "observer saw no data (calibration ran no batch through this layer)");
  ActRange r{lo_, hi_, symmetric_};
  if (kind_ == Observer::MinMax || kind_ == Observer::MovingAverage) return r;
  auto a = torch::cat(samples_);
  const double absmax = std::max(std::abs(lo_), std::abs(hi_));
  if (kind_ == Observer::Percentile) {
    const double p = percentile_ / 100.0;
    // One sort: of |x| for a symmetric range, of x for the two tails otherwise.
    auto sorted = std::get<0>((symmetric_ ? a.abs() : a).sort());
    auto at = [&](double f) { return sorted[std::clamp<int64_t>(std::llround(f * (a.numel() - 1)), 0, a.numel() - 1)].item<double>(); };
    if (symmetric_) return {-at(p), at(p), true};
    return {at(1 - p), at(p), false};
  }
  if (kind_ == Observer::Mse) {
    double best = std::numeric_limits<double>::infinity();
    ActRange best_r = r;
    for (int k = 1; k <= 50; ++k) {
      const double c = k / 50.0;
      ActRange cand{lo_ * c, hi_ * c, symmetric_};
      const double err = (fake_quantize_activation(a, cand) - a).pow(2).mean().item<double>();
      if (err < best) { best = err; best_r = cand; }
    }
    return best_r;
  }
  // Entropy: a symmetric threshold on |x|, intersected with the observed range.
  const double t = absmax > 0 ? entropy_threshold(a, absmax) : 0.0;
  return {std::max(lo_, -t), std::min(hi_, t), symmetric_};
}

}  // namespace condense::quantize
