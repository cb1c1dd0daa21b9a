#include "condense/core/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "condense/core/error.h"

namespace condense {

std::string read_file(const std::filesystem::path& path) {
  // An ifstream opens a directory "successfully" on Linux and then reads nothing.
  CONDENSE_CHECK(!std::filesystem::is_directory(path), "{}: is a directory, expected a file", path.string());
  std::ifstream in(path, std::ios::binary);
  CONDENSE_CHECK(in.good(), "{}: cannot open file ({})", path.string(), std::strerror(errno));
  std::ostringstream ss;
  if (in.peek() != std::ifstream::traits_type::eof()) ss << in.rdbuf();
  CONDENSE_CHECK(!in.bad() && !ss.fail(), "{}: read failed", path.string());
  return ss.str();
}

static void fsync_directory(const std::filesystem::path& dir) {
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

AtomicFile::AtomicFile(std::filesystem::path path) : path_(std::move(path)) {
  tmp_ = path_;
  tmp_ += ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CONDENSE_CHECK(fd_ >= 0, "{}: cannot create file ({})", path_.string(), std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, std::size_t size) {
  CONDENSE_CHECK(fd_ >= 0, "{}: write after commit", path_.string());
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    CONDENSE_CHECK(n > 0, "{}: write failed ({})", path_.string(), std::strerror(errno));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::commit() {
  CONDENSE_CHECK(fd_ >= 0, "{}: commit twice", path_.string());
  CONDENSE_CHECK(::fsync(fd_) == 0, "{}: fsync failed ({})", path_.string(), std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  CONDENSE_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "{}: rename failed ({})", path_.string(),
                 std::strerror(errno));
  fsync_directory(path_.parent_path());
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

void ensure_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  CONDENSE_CHECK(!ec, "{}: cannot create directory ({})", dir.string(), ec.message());
}

}  // namespace condense
