#include "test_util.h"

#include <cstdlib>

namespace condense::testing {

std::filesystem::path source_dir() {
  const char* s = std::getenv("CONDENSE_SOURCE_DIR");
  return s ? std::filesystem::path(s) : std::filesystem::current_path();
}

std::filesystem::path shared_data_dir() {
  auto p = source_dir().parent_path() / "shared" / "data";
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}

std::filesystem::path glue_dir(const std::string& task) {
  auto local = source_dir() / "data" / "glue" / task;
  if (std::filesystem::exists(local)) return local;
  auto shared = shared_data_dir();
  return shared.empty() ? std::filesystem::path() : shared / "glue" / task;
}

std::filesystem::path scratch_dir(const std::string& name) {
  const char* b = std::getenv("CONDENSE_BINARY_DIR");
  auto root = (b ? std::filesystem::path(b) : std::filesystem::temp_directory_path()) / "test_scratch" / name;
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  return root;
}

std::filesystem::path teacher_dir() {
  const char* t = std::getenv("CONDENSE_TEACHER_DIR");
  return t && *t ? std::filesystem::path(t) : std::filesystem::path();
}

}  // namespace condense::testing
