#pragma once
/// \file
/// Quantization of BERT encoders: weight quantizers (uniform symmetric/asymmetric, power-of-two,
/// logarithmic, k-means codebook, binary, fp16/bf16) at per-tensor, per-channel or group-wise
/// granularity; activation observers for static calibration; dynamic activation quantization;
/// quantization-aware training with fake-quant and straight-through gradients; Hessian-guided
/// mixed precision; packed storage; int8 execution.
///
/// Papers: Jacob et al. 2018 (integer-only inference, asymmetric zero points); Zafrir et al. 2019
/// (Q8BERT: symmetric int8, EMA activation ranges, QAT with the straight-through estimator);
/// Shen et al. 2020 (Q-BERT: group-wise quantization, Hessian top-eigenvalue mixed precision);
/// Zhang et al. 2020 (TernaryBERT: 2-bit symmetric = ternary); Bai et al. 2021 (BinaryBERT:
/// sign × mean |w|); Miyashita et al. 2016 (logarithmic quantization); Han et al. 2016 (Deep
/// Compression: k-means weight sharing); Migacz 2017 (TensorRT entropy calibration).
///
/// A quantized model is an ordinary nn::BertClassifier whose Dense layers carry a
/// nn::DenseKernel: their float weights hold the dequantized values, so evaluation, training
/// (QAT) and saving need nothing new, and the kernel does the quantized arithmetic.

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "condense/nn/bert.h"
#include "condense/train/train.h"

namespace condense::quantize {

enum class Method {
  Uniform,     ///< evenly spaced levels (bits = 1: binary, sign × mean |w| per group)
  PowerOfTwo,  ///< uniform with scales rounded up to a power of two (fixed point: shifts, no multiplies)
  Log,         ///< 0 and ±scale·2⁻ᵏ: one sign bit, the rest an exponent
  KMeans,      ///< a codebook of 2^bits centroids per group (Lloyd's algorithm, linear initialisation)
  Float16,     ///< IEEE half
  BFloat16     ///< bfloat16
};
enum class Granularity { PerTensor, PerChannel, Group };

std::string to_string(Method m);
std::string to_string(Granularity g);
/// Parse the names above (uniform, pow2, log, kmeans, fp16, bf16; tensor, channel, group); throw otherwise.
Method parse_method(const std::string& name);
Granularity parse_granularity(const std::string& name);

/// How one weight matrix is quantized. Groups run along a row (the input dimension), so a group
/// never mixes output channels.
struct Scheme {
  int bits = 8;                                     ///< 1, 2, 4 or 8 (16 for fp16/bf16)
  Method method = Method::Uniform;
  bool symmetric = true;                            ///< false: asymmetric with a zero point (uniform, pow2)
  Granularity granularity = Granularity::PerChannel;
  int64_t group_size = 128;                         ///< elements per group (Granularity::Group)
  /// How each group's range is chosen (uniform, pow2, log): "minmax" (the whole range), "mse"
  /// (the clipping of the range, from 100 % down to 50 %, with the least squared error per
  /// group) or "percentile" (the 99.9th percentile of |w| per group).
  std::string range = "minmax";

  Scheme& with_bits(int v) { bits = v; return *this; }
  Scheme& with_method(Method v) { method = v; return *this; }
  Scheme& with_symmetric(bool v) { symmetric = v; return *this; }
  Scheme& with_granularity(Granularity v) { granularity = v; return *this; }
  Scheme& with_group_size(int64_t v) { group_size = v; return *this; }
  Scheme& with_range(std::string v) { range = std::move(v); return *this; }
  /// Throws condense::Error naming the field (`where` prefixes the message).
  void validate(const std::string& where = "scheme") const;
  /// "int4 uniform asym group128", "fp16", ...
  std::string name() const;
  nlohmann::json to_json() const;
  static Scheme from_json(const nlohmann::json& j, const std::string& where);
  bool is_float() const { return method == Method::Float16 || method == Method::BFloat16; }
};

/// A quantized matrix in its storage form. Codes are packed (kernels/pack.h): int8 for
/// symmetric 8-bit, uint8 for asymmetric 8-bit, a uint8 byte array for 4/2/1-bit codes and
/// codebook indices, fp16/bf16 values for the float methods.
struct QTensor {
  Scheme scheme;
  std::vector<int64_t> shape;  ///< the original [rows, cols]
  torch::Tensor codes;
  torch::Tensor scale;         ///< float32 [groups] (uniform, pow2, log, binary)
  torch::Tensor zero_point;    ///< uint8 [groups] (asymmetric)
  torch::Tensor codebook;      ///< float32 [groups, 2^bits] (kmeans)

  int64_t numel() const;
  int64_t num_groups() const;
  /// The float32 matrix the codes stand for.
  torch::Tensor dequantize() const;
  /// Bytes the codes and their parameters take on disk.
  int64_t nbytes() const;
  /// Checks that every part has the size its scheme and shape imply; `where` names the source.
  void validate(const std::string& where) const;
};

/// Quantizes a 2-D float tensor. Throws when the scheme does not fit the shape (a group size
/// that does not divide the row).
QTensor quantize_tensor(const torch::Tensor& w, const Scheme& scheme);
/// quantize_tensor then dequantize, with the straight-through estimator: the gradient passes to
/// `w` unchanged (Bengio et al. 2013; Q8BERT).
torch::Tensor fake_quantize(const torch::Tensor& w, const Scheme& scheme);

/// Activation range estimators for static quantization.
enum class Observer {
  MinMax,         ///< running min and max over all calibration batches
  MovingAverage,  ///< exponential moving average of per-batch min/max (Q8BERT, momentum 0.9)
  Percentile,     ///< the p-th percentile of |x| (default 99.99)
  Mse,            ///< the clipping range minimising the quantization MSE on the samples
  Entropy         ///< the threshold minimising KL(P‖Q) of 2048-bin histograms (TensorRT)
};
std::string to_string(Observer o);
Observer parse_observer(const std::string& name);

/// 8-bit activation quantization: its range after calibration or per batch.
struct ActRange {
  double lo = 0, hi = 0;
  bool symmetric = false;  ///< int8 in [-128, 127] with scale max|x|/127 (symmetric) or uint8 in [0, 255] with a zero point
  /// scale and zero point of the range (zero_point is 0 when symmetric).
  std::pair<double, int64_t> params() const;
};

/// Collects activation statistics of one tensor stream and turns them into a range.
class RangeObserver {
 public:
  RangeObserver(Observer kind, bool symmetric, double percentile = 99.99);
  void observe(const torch::Tensor& x);
  ActRange range() const;

 private:
  Observer kind_;
  bool symmetric_;
  double percentile_;
  double lo_ = 0, hi_ = 0;
  bool seen_ = false;
  std::vector<torch::Tensor> samples_;  // bounded subsample for percentile / MSE / entropy
  int64_t sampled_ = 0;
};

/// x quantized to 8 bits with range r and dequantized (straight-through gradient).
torch::Tensor fake_quantize_activation(const torch::Tensor& x, const ActRange& r);

enum class Activations { None, Dynamic, Static };
std::string to_string(Activations a);
Activations parse_activations(const std::string& name);

/// Options of quantize::apply.
struct QuantizeOptions {
  Scheme weights;                          ///< every encoder Dense layer (attention, FFN)
  std::optional<Scheme> embeddings;        ///< word/position/type embedding tables (rows = channels); none = float
  Activations activations = Activations::None;  ///< 8-bit inputs of every quantized layer
  bool act_symmetric = false;              ///< int8 instead of uint8 with a zero point
  Observer observer = Observer::MinMax;    ///< static calibration
  double percentile = 99.99;
  int64_t calib_batches = 16;              ///< batches of calibration data (static)
  int64_t calib_batch_size = 32;
  std::vector<std::string> keep_float;     ///< layers (name prefixes) left in float: the fallback list
  std::map<std::string, int> layer_bits;   ///< per-layer bit widths (mixed precision), by name prefix
  bool int8_kernels = true;                ///< execute int8×int8 products in integer arithmetic where possible

  QuantizeOptions& with_weights(Scheme v) { weights = v; return *this; }
  QuantizeOptions& with_embeddings(std::optional<Scheme> v) { embeddings = v; return *this; }
  QuantizeOptions& with_activations(Activations v) { activations = v; return *this; }
  QuantizeOptions& with_act_symmetric(bool v) { act_symmetric = v; return *this; }
  QuantizeOptions& with_observer(Observer v) { observer = v; return *this; }
  QuantizeOptions& with_percentile(double v) { percentile = v; return *this; }
  QuantizeOptions& with_calib_batches(int64_t v) { calib_batches = v; return *this; }
  QuantizeOptions& with_keep_float(std::vector<std::string> v) { keep_float = std::move(v); return *this; }
  QuantizeOptions& with_layer_bits(std::map<std::string, int> v) { layer_bits = std::move(v); return *this; }
  QuantizeOptions& with_int8_kernels(bool v) { int8_kernels = v; return *this; }
  void validate() const;
};

/// One quantized layer (a Dense layer or an embedding table) of a model.
struct LayerQuant {
  QTensor weight;
  std::optional<ActRange> input;  ///< static activation range
};

/// What apply / load return: the quantized layers by module name, in model order.
struct QuantizedModel {
  QuantizeOptions options;
  std::map<std::string, LayerQuant> layers;
  /// The entry config.json carries (`quantization_config`).
  nlohmann::json config() const;
};

/// The names of the encoder's Dense layers ("bert.encoder.layer.0.attention.self.query", ...).
std::vector<std::string> dense_layer_names(nn::BertClassifier& model);

/// Quantizes `model` in place: weights replaced by their dequantized values, kernels installed on
/// the Dense layers. Static activations are calibrated on `calib` (required then).
QuantizedModel apply(nn::BertClassifier& model, const QuantizeOptions& options,
                     const train::EncodedDataset* calib = nullptr);

/// Installs kernels that fake-quantize weights and activations in training (QAT, Q8BERT): weight
/// ranges from the current weights at every step, activation ranges by EMA (momentum 0.9) while
/// training and frozen in eval mode. After training, apply() with the same options turns the
/// model into its stored form.
void prepare_qat(nn::BertClassifier& model, const QuantizeOptions& options);

/// Sensitivity of each Dense layer for mixed precision (Q-BERT, HAWQ-V2): the mean eigenvalue of
/// the loss Hessian block of the layer's weight (its trace per parameter), estimated by
/// Hutchinson's method with `iterations` Rademacher probes per batch over `batches` batches
/// of 8 examples of `data`.
std::map<std::string, double> hessian_sensitivity(nn::BertClassifier& model, const train::EncodedDataset& data,
                                                  int64_t batches = 4, int64_t iterations = 20, uint64_t seed = 0);
/// Bit widths per layer: the most sensitive layers get `high` bits, the rest `low`, so that the
/// encoder's Dense weights fit `budget_bits_per_weight` on average (Q-BERT's assignment, greedy by
/// eigenvalue per parameter).
std::map<std::string, int> assign_bits(const std::map<std::string, double>& sensitivity,
                                       nn::BertClassifier& model, int low, int high,
                                       double budget_bits_per_weight);

/// Per-layer error of a quantized model against its float original on the same inputs: the
/// relative L2 error of each Dense layer's output, so a user sees which layer breaks accuracy.
struct LayerError {
  std::string layer;
  double relative_error = 0;  ///< ‖y_q − y‖ / ‖y‖ over the data
  double cosine = 0;
};
std::vector<LayerError> layer_errors(nn::BertClassifier& float_model, nn::BertClassifier& quant_model,
                                     const train::EncodedDataset& data, int64_t batches = 4);

/// Whether the integer path can run a layer quantized with `s`: symmetric uniform or power-of-two
/// weights of any width, per-channel or per-tensor (narrower codes are widened to int8).
bool int8_capable(const Scheme& s);
/// The int8 matrix the integer path multiplies by: codes [rows, cols] (4/2/1-bit codes widened:
/// the dequantized values are exactly code · scale) and one float scale per row.
struct Int8Weights {
  torch::Tensor codes, scale;
};
Int8Weights int8_weights(const QTensor& w);

/// Writes a quantized folder: model.safetensors with each quantized weight packed under its own
/// name (`<layer>.weight`) and its parameters beside it (`<layer>.weight_scale`,
/// `<layer>.weight_zero_point`, `<layer>.weight_codebook`, `<layer>.input_scale`,
/// `<layer>.input_zero_point`), config.json with `quantization_config`; atomically.
void save(nn::BertClassifier& model, const QuantizedModel& q, const std::filesystem::path& dir,
          const std::filesystem::path& tokenizer_dir, const std::map<std::string, std::string>& extra_files = {});
/// Whether a folder holds a quantized model (its config.json has quantization_config).
bool is_quantized(const std::filesystem::path& dir);
/// Loads a quantized folder: codes checked against their scheme, dequantized, kernels installed.
/// A truncated or inconsistent part fails with the file and tensor named.
nn::BertClassifier load(const std::filesystem::path& dir, QuantizedModel* q = nullptr);

}  // namespace condense::quantize
