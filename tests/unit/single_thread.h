#pragma once
// Torch tests that train tiny models run on one intra-op thread: a second OpenMP thread only adds
// synchronisation there (several times slower on a loaded two-core machine), and results stay
// comparable across runs. Including this header registers the environment once per executable.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

namespace condense::testing {

class SingleThread : public ::testing::Environment {
 public:
  void SetUp() override { at::set_num_threads(1); }
};

inline ::testing::Environment* const kSingleThread = ::testing::AddGlobalTestEnvironment(new SingleThread);

}  // namespace condense::testing
