#pragma once
/// \file
/// Torch-free reader and writer for the safetensors format
/// (https://github.com/huggingface/safetensors, "Format" section of its README).
///
/// Layout: an 8-byte little-endian u64 N, then N bytes of a UTF-8 JSON object
///   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
///    "__metadata__": {"<key>": "<string>", ...}}
/// then the data section. Offsets are relative to the start of the data section, the tensors
/// are stored row-major and little-endian, and (as the reference Rust implementation enforces)
/// they cover the data section contiguously from byte 0 with no gaps, overlaps or trailing bytes.
///
/// The reader maps the file and checks all of this before handing out a single view, so a
/// truncated or hostile file fails in open() with one line naming the file, the tensor or
/// field, and what was found versus expected — never later as an out-of-bounds read.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace condense::io {

/// Element types of the format. The names (dtype_name) are the spec's strings.
/// F8_E5M2/F8_E4M3 and the unsigned U16/U32/U64 are in the spec too; the sub-byte types
/// (F4, F6_*) are not supported.
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E5M2, F8_E4M3, U16, U32, U64 };

/// Bytes per element (BOOL is one byte, as in the spec).
std::size_t dtype_size(DType dtype);
/// The spec's name: "F32", "BF16", "BOOL", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);
/// Inverse of dtype_name; nullopt for a name that is not one of ours (case-sensitive, as the spec).
std::optional<DType> parse_dtype(std::string_view name);

/// One tensor of an open file. `data` points into the read-only mapping and stays valid as long
/// as the SafetensorsFile that produced it (moving the file object does not invalidate it).
/// `data` is NOT necessarily aligned for the element type (foreign writers need not pad the
/// header); copy with memcpy rather than casting to e.g. `const float*`.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const std::byte* data;
  std::size_t nbytes;
  /// Product of the shape (1 for a scalar, 0 for an empty tensor). Checked not to overflow at open().
  int64_t numel() const;
};

/// A validated, memory-mapped safetensors file. Movable, not copyable; unmaps in the destructor.
/// If another process truncates the file while it is mapped, touching the data raises SIGBUS —
/// the usual mmap caveat; condense only maps files it does not write concurrently.
class SafetensorsFile {
 public:
  /// mmaps `path` (read-only, MAP_PRIVATE) and validates the prefix, the header and every
  /// tensor's dtype/shape/span before returning. Throws condense::Error naming the file.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  /// All tensors, in data-offset order (the order they lie in the file).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const TensorView* find(std::string_view name) const;
  /// The tensor called `name`; throws "<file>: tensor '<name>' not found".
  const TensorView& at(std::string_view name) const;
  /// The "__metadata__" string map (empty when the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;

  std::filesystem::path path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

/// One tensor to write; `data` must hold `nbytes` bytes (may be null when nbytes is 0).
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  std::size_t nbytes;
};

/// Writes a safetensors file atomically (AtomicFile: temp file, fsync, rename), so a failure
/// leaves no new file and an existing `path` untouched. Everything is validated before the
/// first byte is written: names must be non-empty, valid UTF-8, unique and not "__metadata__";
/// dims non-negative; nbytes == numel * dtype_size. Tensors are laid out in the given order;
/// the header is padded with spaces to a multiple of 8 bytes (as the reference writer does) so
/// the data section starts 8-aligned.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace condense::io
