#pragma once
// Helpers shared by the test executables: where the source tree, shared data and a scratch
// directory are.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "condense/core/error.h"

namespace condense::testing {

/// The repository root (CONDENSE_SOURCE_DIR, set by CTest).
std::filesystem::path source_dir();
/// ../shared/data beside the repository, or empty when it is absent.
std::filesystem::path shared_data_dir();
/// GLUE data: the repository's data/glue when the task is there, else ../shared/data/glue.
std::filesystem::path glue_dir(const std::string& task);
/// A fresh empty directory under the build tree for this test.
std::filesystem::path scratch_dir(const std::string& name);
/// The teacher checkpoint folder (CONDENSE_TEACHER_DIR), or empty when unset.
std::filesystem::path teacher_dir();

/// The message of the condense::Error `f` throws ("" and a test failure when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const condense::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected condense::Error";
  return "";
}

}  // namespace condense::testing
