#pragma once
/// \file
/// Whole-file reads and crash-safe writes.
///
/// Every output condense produces goes through AtomicFile: bytes go to `<path>.tmp.<pid>`, are
/// fsync'ed, then renamed over `path`, and the directory is fsync'ed. A crash or kill -9 leaves
/// either the old file or the new one, never a half-written file.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace condense {

/// Reads a whole file; throws condense::Error naming the file when it cannot be read.
std::string read_file(const std::filesystem::path& path);

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory).
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// A file being written: append with write(), publish with commit(). If the object is destroyed
/// without commit() (e.g. an exception), the temp file is removed and `path` is untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  /// fsync, rename over the target, fsync the directory.
  void commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  int fd_ = -1;
};

/// Creates `dir` (and parents); throws condense::Error naming it on failure.
void ensure_directory(const std::filesystem::path& dir);

}  // namespace condense
