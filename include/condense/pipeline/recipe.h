#pragma once
/// \file
/// YAML recipes: a distillation run described in a file instead of flags.
///
/// ```yaml
/// task: sst2                      # optional
/// student: {layers: 3, init: teacher, init_layers: [0, 2, 4]}   # or hidden_size, num_attention_heads, intermediate_size
/// distill: {loss: kl, temperature: 2.0, alpha: 0.5}
/// train:   {epochs: 3, batch_size: 32, learning_rate: 1.0e-4, warmup_ratio: 0.1, weight_decay: 0.01,
///           max_grad_norm: 1.0, seed: 42, max_length: 128, train_limit: 0}
/// ```
/// Unknown keys are errors (a typo must not silently fall back to a default).

#include <filesystem>
#include <optional>
#include <string>

#include "condense/distill/distill.h"

namespace condense::pipeline {

/// A parsed recipe. Fields absent from the file keep the library defaults.
struct Recipe {
  std::optional<std::string> task;
  distill::StudentOptions student;
  distill::DistillOptions distill;
  int max_length = 128;
  int64_t train_limit = 0;  ///< 0 = the whole training set
};

/// Reads a recipe; errors name the file and the key.
Recipe load_recipe(const std::filesystem::path& path);

}  // namespace condense::pipeline
