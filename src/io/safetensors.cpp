#include "condense/io/safetensors.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "condense/core/error.h"
#include "condense/core/file.h"

namespace condense::io {
namespace {

using nlohmann::json;

/// The reference implementation's MAX_HEADER_SIZE: a header above it is refused before any
/// JSON is parsed, so a hostile length prefix cannot make us parse (or allocate for) gigabytes.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
/// Legitimate headers nest containers at most 2 deep (header -> entry -> shape). Capping the
/// depth keeps every later step (including dump() in error messages, which recurses) bounded.
constexpr int kMaxJsonDepth = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
};

// Names and sizes as in the spec's Dtype enum.
constexpr std::array<DTypeInfo, 15> kDTypes{{
    {DType::F64, "F64", 8},
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
    {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::U16, "U16", 2},
    {DType::U32, "U32", 4},
    {DType::U64, "U64", 8},
}};

const DTypeInfo& info(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d;
  }
  fail("safetensors: invalid DType value {}", static_cast<int>(dtype));
}

std::string known_dtype_names() {
  std::string out;
  for (const auto& d : kDTypes) {
    if (!out.empty()) out += ", ";
    out += d.name;
  }
  return out;
}

/// Offset of the first byte that is not part of well-formed UTF-8 (no overlongs, no surrogates,
/// nothing above U+10FFFF), or npos. The spec requires the header to be UTF-8.
std::size_t invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

/// A name from the file for an error message: control characters escaped (the message must stay
/// one line) and long names cut at a UTF-8 character boundary.
std::string printable(std::string_view s) {
  constexpr std::size_t kMax = 200;
  std::string out;
  std::size_t i = 0;
  for (; i < s.size() && out.size() < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (i < s.size()) {
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "...";
  }
  return out;
}

/// A JSON value for an error message, cut short so a hostile header cannot produce a huge line.
std::string brief(const json& value) {
  std::string s = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 48) s = s.substr(0, 45) + "...";
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  if (shape.size() <= 16) return fmt::format("[{}]", fmt::join(shape, ","));
  return fmt::format("[{},...] ({} dims)", fmt::join(shape.begin(), shape.begin() + 16, ","), shape.size());
}

/// numel of `shape`, or nullopt when it does not fit in int64 (the type numel() returns).
std::optional<std::uint64_t> checked_numel(const std::vector<int64_t>& shape) {
  std::uint64_t n = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
    if (n > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  }
  return n;
}

std::uint64_t read_u64_le(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

/// Parses the header. nlohmann keeps one value of a repeated key silently, so repeated keys are
/// caught in the parse callback (at every level: a repeated tensor name and a repeated "dtype"
/// are both ambiguous). The callback also caps nesting depth.
json parse_header(const std::string& file, std::string_view header) {
  std::vector<std::set<std::string>> keys;  // one key set per open object
  std::string entry;                        // current top-level key, for messages
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        CONDENSE_CHECK(depth < kMaxJsonDepth, "{}: header nests JSON deeper than {} levels (inside '{}')", file,
                       kMaxJsonDepth, entry);
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& k = parsed.get_ref<const std::string&>();
        if (depth == 1) entry = printable(k);
        if (!keys.back().insert(k).second) {
          if (depth == 1) fail("{}: header: duplicate key '{}' (tensor names must be unique)", file, entry);
          fail("{}: tensor '{}': duplicate field '{}'", file, entry, printable(k));
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(header.begin(), header.end(), callback);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    if (what.size() > 200) what = what.substr(0, 197) + "...";
    fail("{}: header is not valid JSON (at header byte {}): {}", file, e.byte, what);
  }
}

struct Span {
  std::uint64_t begin, end;
};

/// Validates one header entry and returns its view (data pointer filled in by the caller).
TensorView parse_entry(const std::string& file, const std::string& key, const json& entry, std::uint64_t data_size,
                       Span& span) {
  const std::string name = printable(key);
  CONDENSE_CHECK(entry.is_object(),
                 "{}: tensor '{}': entry is a JSON {}, expected an object with dtype, shape, data_offsets", file, name,
                 entry.type_name());
  auto field = [&](const char* field_name) -> const json& {
    auto it = entry.find(field_name);
    CONDENSE_CHECK(it != entry.end(), "{}: tensor '{}': missing field '{}'", file, name, field_name);
    return *it;
  };

  TensorView view{key, DType::F32, {}, nullptr, 0};

  const json& dtype = field("dtype");
  CONDENSE_CHECK(dtype.is_string(), "{}: tensor '{}': field 'dtype' is a JSON {} ({}), expected a string", file, name,
                 dtype.type_name(), brief(dtype));
  const auto& dtype_str = dtype.get_ref<const std::string&>();
  auto parsed = parse_dtype(dtype_str);
  CONDENSE_CHECK(parsed.has_value(), "{}: tensor '{}': unknown dtype '{}' (expected one of {})", file, name,
                 printable(dtype_str.substr(0, 40)), known_dtype_names());
  view.dtype = *parsed;

  const json& shape = field("shape");
  CONDENSE_CHECK(shape.is_array(),
                 "{}: tensor '{}': field 'shape' is a JSON {} ({}), expected an array of non-negative integers", file,
                 name, shape.type_name(), brief(shape));
  view.shape.reserve(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const json& d = shape[i];
    // nlohmann stores non-negative integer literals as number_unsigned, negative ones as
    // number_integer, anything with a fraction/exponent (or beyond u64) as number_float.
    CONDENSE_CHECK(d.is_number_unsigned() &&
                       d.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max()),
                   "{}: tensor '{}': shape[{}] is {}, expected a non-negative integer", file, name, i, brief(d));
    view.shape.push_back(d.get<int64_t>());
  }

  const json& offsets = field("data_offsets");
  const bool offsets_ok =
      offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned();
  CONDENSE_CHECK(offsets_ok,
                 "{}: tensor '{}': field 'data_offsets' is {}, expected [begin, end] (two non-negative integers)", file,
                 name, brief(offsets));
  span = {offsets[0].get<std::uint64_t>(), offsets[1].get<std::uint64_t>()};
  CONDENSE_CHECK(span.begin <= span.end, "{}: tensor '{}': data_offsets [{},{}] has begin > end", file, name,
                 span.begin, span.end);
  CONDENSE_CHECK(span.end <= data_size,
                 "{}: tensor '{}': data_offsets end {} is beyond the data section ({} bytes; file truncated?)", file,
                 name, span.end, data_size);

  auto numel = checked_numel(view.shape);
  CONDENSE_CHECK(numel.has_value(), "{}: tensor '{}': shape {} has more than 2^63-1 elements", file, name,
                 shape_str(view.shape));
  std::uint64_t nbytes = 0;
  CONDENSE_CHECK(!__builtin_mul_overflow(*numel, static_cast<std::uint64_t>(dtype_size(view.dtype)), &nbytes),
                 "{}: tensor '{}': dtype {} shape {} needs more than 2^64 bytes", file, name, dtype_name(view.dtype),
                 shape_str(view.shape));
  CONDENSE_CHECK(nbytes == span.end - span.begin,
                 "{}: tensor '{}': dtype {} shape {} needs {} bytes but data_offsets span {}", file, name,
                 dtype_name(view.dtype), shape_str(view.shape), nbytes, span.end - span.begin);
  view.nbytes = static_cast<std::size_t>(nbytes);
  return view;
}

}  // namespace

std::size_t dtype_size(DType dtype) { return info(dtype).size; }

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name) return d.dtype;
  }
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // cannot overflow: checked at open()
  return n;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (map_ != nullptr) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::at(std::string_view name) const {
  const TensorView* t = find(name);
  CONDENSE_CHECK(t != nullptr, "{}: tensor '{}' not found", path_.string(), name);
  return *t;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string file = path.string();
  SafetensorsFile out;
  out.path_ = path;

  {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    CONDENSE_CHECK(fd >= 0, "{}: cannot open file ({})", file, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot stat file ({})", file, std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("{}: not a regular file", file);
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size < 8) {
      ::close(fd);
      fail("{}: file is {} bytes, shorter than the 8-byte header-length prefix", file, size);
    }
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);  // the mapping keeps the file alive
    CONDENSE_CHECK(m != MAP_FAILED, "{}: mmap of {} bytes failed ({})", file, size, std::strerror(err));
    out.map_ = m;  // owned from here on: unmapped by ~SafetensorsFile if validation throws
    out.map_size_ = size;
  }

  const auto* base = static_cast<const unsigned char*>(out.map_);
  const std::uint64_t size = out.map_size_;
  const std::uint64_t header_len = read_u64_le(base);
  CONDENSE_CHECK(header_len != 0, "{}: header length is 0, expected a JSON object", file);
  CONDENSE_CHECK(header_len <= kMaxHeaderBytes, "{}: header length {} exceeds the {}-byte limit", file, header_len,
                 kMaxHeaderBytes);
  CONDENSE_CHECK(header_len <= size - 8,
                 "{}: header length {} exceeds the {} bytes after the 8-byte prefix (file is {} bytes; truncated?)",
                 file, header_len, size - 8, size);

  const std::string_view header(reinterpret_cast<const char*>(base + 8), header_len);
  const std::uint64_t data_size = size - 8 - header_len;
  const std::byte* data = reinterpret_cast<const std::byte*>(base + 8 + header_len);

  if (auto bad = invalid_utf8_at(header); bad != std::string_view::npos) {
    fail("{}: header is not valid UTF-8 (byte 0x{:02x} at header offset {})", file,
         static_cast<unsigned char>(header[bad]), bad);
  }
  const json root = parse_header(file, header);
  CONDENSE_CHECK(root.is_object(), "{}: header is a JSON {}, expected an object", file, root.type_name());
  // The reference reader rejects a header that does not start with '{' (InvalidHeaderStart);
  // trailing spaces are the writer's padding and are fine.
  CONDENSE_CHECK(header.front() == '{', "{}: header starts with byte 0x{:02x}, expected '{{'", file,
                 static_cast<unsigned char>(header.front()));

  std::vector<Span> spans;
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      CONDENSE_CHECK(value.is_object(), "{}: __metadata__ is a JSON {}, expected an object of strings", file,
                     value.type_name());
      for (const auto& [mk, mv] : value.items()) {
        CONDENSE_CHECK(mv.is_string(), "{}: __metadata__ '{}' is a JSON {} ({}), expected a string", file,
                       printable(mk), mv.type_name(), brief(mv));
        out.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    Span span{};
    out.tensors_.push_back(parse_entry(file, key, value, data_size, span));
    out.tensors_.back().data = data + span.begin;
    spans.push_back(span);
  }

  // The reference reader sorts by offsets and demands that each tensor starts where the previous
  // one ended, from 0 to the end of the data section: no overlap (two views of the same bytes),
  // no gap and no trailing bytes (unaccounted data, e.g. a file appended to or hand-edited).
  std::vector<std::size_t> order(out.tensors_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (spans[a].begin != spans[b].begin) return spans[a].begin < spans[b].begin;
    if (spans[a].end != spans[b].end) return spans[a].end < spans[b].end;
    return out.tensors_[a].name < out.tensors_[b].name;
  });
  std::uint64_t cursor = 0;
  const std::string* previous = nullptr;
  for (std::size_t i : order) {
    const Span& s = spans[i];
    const std::string& key = out.tensors_[i].name;
    const std::string name = printable(key);
    CONDENSE_CHECK(s.begin >= cursor, "{}: tensor '{}': data_offsets [{},{}] overlap tensor '{}' which ends at {}",
                   file, name, s.begin, s.end, previous ? printable(*previous) : std::string(), cursor);
    CONDENSE_CHECK(s.begin == cursor,
                   "{}: tensor '{}': data_offsets begin {} leaves bytes [{},{}) unused (tensors must cover the data "
                   "section contiguously from 0)",
                   file, name, s.begin, cursor, s.begin);
    cursor = s.end;
    previous = &key;
  }
  CONDENSE_CHECK(cursor == data_size,
                 "{}: data section is {} bytes but the tensors cover only {} (trailing bytes after the last tensor)",
                 file, data_size, cursor);

  std::vector<TensorView> sorted;
  sorted.reserve(order.size());
  for (std::size_t i : order) sorted.push_back(std::move(out.tensors_[i]));
  out.tensors_ = std::move(sorted);
  for (std::size_t i = 0; i < out.tensors_.size(); ++i) out.index_.emplace(out.tensors_[i].name, i);
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();

  // Validate everything before the first byte goes out, so a bad call creates no file at all.
  for (const auto& [k, v] : metadata) {
    CONDENSE_CHECK(invalid_utf8_at(k) == std::string_view::npos && invalid_utf8_at(v) == std::string_view::npos,
                   "{}: __metadata__ key '{}' or its value is not valid UTF-8", file, printable(k));
  }
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;

  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    CONDENSE_CHECK(!t.name.empty(), "{}: tensor name is empty", file);
    CONDENSE_CHECK(t.name != kMetadataKey, "{}: tensor name '{}' is reserved for metadata", file, printable(t.name));
    const std::size_t bad = invalid_utf8_at(t.name);
    CONDENSE_CHECK(bad == std::string_view::npos, "{}: tensor name is not valid UTF-8 (byte {} of '{}')", file, bad,
                   printable(t.name.substr(0, bad)));
    CONDENSE_CHECK(names.insert(t.name).second, "{}: tensor '{}': duplicate tensor name", file, printable(t.name));
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      CONDENSE_CHECK(t.shape[i] >= 0, "{}: tensor '{}': shape[{}] is {}, expected a non-negative integer", file,
                     printable(t.name), i, t.shape[i]);
    }
    auto numel = checked_numel(t.shape);
    std::uint64_t need = 0;
    CONDENSE_CHECK(numel && !__builtin_mul_overflow(*numel, static_cast<std::uint64_t>(dtype_size(t.dtype)), &need),
                   "{}: tensor '{}': dtype {} shape {} overflows 64-bit sizes", file, printable(t.name),
                   dtype_name(t.dtype), shape_str(t.shape));
    CONDENSE_CHECK(need == t.nbytes, "{}: tensor '{}': dtype {} shape {} needs {} bytes but {} were given", file,
                   printable(t.name), dtype_name(t.dtype), shape_str(t.shape), need, t.nbytes);
    CONDENSE_CHECK(t.data != nullptr || t.nbytes == 0, "{}: tensor '{}': data is null", file, printable(t.name));
    std::uint64_t end = 0;
    CONDENSE_CHECK(!__builtin_add_overflow(offset, need, &end), "{}: tensor '{}': data section exceeds 2^64 bytes",
                   file, printable(t.name));
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }

  std::string text = header.dump();
  // Spec: the header may be padded with trailing spaces; padding to a multiple of 8 (as the
  // reference writer does) makes the data section 8-aligned, so views of it can be aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  CONDENSE_CHECK(text.size() <= kMaxHeaderBytes, "{}: header would be {} bytes, above the {}-byte limit readers accept",
                 file, text.size(), kMaxHeaderBytes);

  unsigned char prefix[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(n >> (8 * i));

  AtomicFile out(path);
  out.write(prefix, sizeof prefix);
  out.write(text);
  for (const auto& t : tensors) {
    if (t.nbytes > 0) out.write(t.data, t.nbytes);
  }
  out.commit();
}

}  // namespace condense::io
