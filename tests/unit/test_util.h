#pragma once
// Helpers shared by the test executables: where the source tree, shared data and a scratch
// directory are.
#include <filesystem>
#include <string>

namespace condense::testing {

/// The repository root (CONDENSE_SOURCE_DIR, set by CTest).
std::filesystem::path source_dir();
/// ../shared/data beside the repository, or empty when it is absent.
std::filesystem::path shared_data_dir();
/// GLUE data: the repository's data/glue when the task is there, else ../shared/data/glue.
std::filesystem::path glue_dir(const std::string& task);
/// A fresh empty directory under the build tree for this test.
std::filesystem::path scratch_dir(const std::string& name);

}  // namespace condense::testing
