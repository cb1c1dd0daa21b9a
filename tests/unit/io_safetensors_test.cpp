// Tests of the torch-free safetensors reader/writer: round trips, the exact byte layout,
// interoperability with the reference Python library and the real teacher checkpoint, and one
// test per hostile input, each pinning the part of the one-line error that names file and field.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "condense/core/error.h"
#include "condense/io/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using condense::io::DType;
using condense::io::SafetensorsFile;
using condense::io::TensorToWrite;
using condense::io::write_safetensors;

namespace {

fs::path test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return condense::testing::scratch_dir(std::string("safetensors_") + info->name());
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string slurp_prefix(const fs::path& p) {
  std::string s(8, '\0');
  std::ifstream(p, std::ios::binary).read(s.data(), 8);
  return s;
}

std::string u64le(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

/// Writes prefix + header + data by hand; `claimed` overrides the length prefix.
fs::path write_raw(const fs::path& path, const std::string& header, const std::string& data,
                   std::optional<std::uint64_t> claimed = std::nullopt) {
  std::ofstream out(path, std::ios::binary);
  out << u64le(claimed.value_or(header.size())) << header << data;
  return path;
}

/// The message open() throws for `path` (fails the test when it does not throw).
std::string open_error(const fs::path& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const condense::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "open(" << path << ") did not throw";
  return {};
}

/// The error must be one line, name the file, and contain every part.
void expect_error(const std::string& message, const fs::path& path, std::initializer_list<std::string> parts) {
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find(path.filename().string()), std::string::npos) << "file name missing: " << message;
  for (const auto& part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' missing: " << message;
}

/// Writes a hand-made file `bad.safetensors` and checks the error open() gives for it.
void expect_rejected(const std::string& header, const std::string& data, std::initializer_list<std::string> parts) {
  const fs::path path = write_raw(test_dir() / "bad.safetensors", header, data);
  expect_error(open_error(path), path, parts);
}

std::string bytes_of(const condense::io::TensorView& t) { return {reinterpret_cast<const char*>(t.data), t.nbytes}; }

template <typename T>
std::vector<T> values_of(const condense::io::TensorView& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.data, t.nbytes);  // data may be unaligned
  return v;
}

const std::string kEightBytes(8, '\x01');

/// Runs `script` with CONDENSE_PYTHON and the given argument; returns the exit status.
int run_python(const fs::path& dir, const std::string& script, const fs::path& arg) {
  const fs::path file = dir / "script.py";
  std::ofstream(file) << script;
  const std::string cmd =
      "'" + std::string(std::getenv("CONDENSE_PYTHON")) + "' '" + file.string() + "' '" + arg.string() + "'";
  return std::system(cmd.c_str());
}

bool have_python() {
  const char* py = std::getenv("CONDENSE_PYTHON");
  return py != nullptr && *py != '\0';
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Round trips and layout

TEST(Safetensors, RoundTripsSeveralDtypesEmptyAndScalarTensorsAndMetadata) {
  const fs::path path = test_dir() / "rt.safetensors";
  const std::vector<double> f64{1.5, -2.25};
  const std::vector<float> f32{0, 1, 2, 3, 4, 5};
  const std::vector<std::uint16_t> f16{0x3C00, 0x3800, 0xC000};
  const std::vector<std::uint16_t> bf16{0x3F80, 0xBF80};
  const std::vector<int64_t> i64{-1, int64_t{1} << 40};
  const std::vector<int32_t> i32{-7};
  const std::vector<int16_t> i16{-300, 300};
  const std::vector<int8_t> i8{-128, 0, 127};
  const std::vector<std::uint8_t> u8{1, 2, 3, 255};
  const std::vector<std::uint8_t> boolean{1, 0, 1};
  const std::vector<std::uint32_t> u32{4000000000u};
  const std::vector<std::uint8_t> f8{0x38, 0xB8};
  const float scalar = 42.0f;
  const std::vector<TensorToWrite> tensors{
      {"f64", DType::F64, {2}, f64.data(), 16},  {"f32", DType::F32, {2, 3}, f32.data(), 24},
      {"f16", DType::F16, {3}, f16.data(), 6},   {"bf16", DType::BF16, {2}, bf16.data(), 4},
      {"i64", DType::I64, {2}, i64.data(), 16},  {"i32", DType::I32, {1}, i32.data(), 4},
      {"i16", DType::I16, {2}, i16.data(), 4},   {"i8", DType::I8, {3}, i8.data(), 3},
      {"u8", DType::U8, {4}, u8.data(), 4},      {"bool", DType::BOOL, {3}, boolean.data(), 3},
      {"u32", DType::U32, {1}, u32.data(), 4},   {"f8", DType::F8_E4M3, {2}, f8.data(), 2},
      {"empty", DType::F32, {0, 4}, nullptr, 0}, {"scalar", DType::F32, {}, &scalar, 4},
  };
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "caf\xc3\xa9"}};
  write_safetensors(path, tensors, metadata);

  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(file.metadata(), metadata);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& want = tensors[i];
    const auto& got = file.tensors()[i];  // offset order == the order written
    SCOPED_TRACE(want.name);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.dtype, want.dtype);
    EXPECT_EQ(got.shape, want.shape);
    EXPECT_EQ(got.nbytes, want.nbytes);
    EXPECT_EQ(bytes_of(got), std::string(static_cast<const char*>(want.data), want.nbytes));
    EXPECT_EQ(&file.at(want.name), &got);
  }
  EXPECT_EQ(file.at("empty").numel(), 0);
  EXPECT_EQ(file.at("scalar").numel(), 1);
  EXPECT_EQ(file.at("f32").numel(), 6);
  EXPECT_EQ(values_of<int64_t>(file.at("i64")), i64);
  EXPECT_EQ(values_of<float>(file.at("scalar")), std::vector<float>{42.0f});
}

TEST(Safetensors, DtypeNamesAndSizesFollowTheSpec) {
  EXPECT_EQ(condense::io::dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(condense::io::dtype_name(DType::BOOL), "BOOL");
  EXPECT_EQ(condense::io::dtype_name(DType::F8_E5M2), "F8_E5M2");
  EXPECT_EQ(condense::io::dtype_size(DType::F64), 8u);
  EXPECT_EQ(condense::io::dtype_size(DType::BF16), 2u);
  EXPECT_EQ(condense::io::dtype_size(DType::BOOL), 1u);
  EXPECT_EQ(condense::io::parse_dtype("I16"), DType::I16);
  EXPECT_EQ(condense::io::parse_dtype("f32"), std::nullopt);  // names are case-sensitive
}

TEST(Safetensors, WritesByteExactLayoutWithHeaderPaddedToEightBytes) {
  const fs::path path = test_dir() / "layout.safetensors";
  const float a = 1.0f;
  const std::uint8_t b[3] = {7, 8, 9};
  write_safetensors(path, {{"a", DType::F32, {1}, &a, 4}, {"b", DType::U8, {3}, b, 3}});

  const std::string json =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}})";
  const std::size_t padded = (json.size() + 7) / 8 * 8;
  std::string expected = u64le(padded) + json + std::string(padded - json.size(), ' ');
  expected.append(reinterpret_cast<const char*>(&a), 4);
  expected.append("\x07\x08\x09", 3);
  EXPECT_EQ(slurp(path), expected);
  EXPECT_EQ(padded % 8, 0u);
  EXPECT_NE(padded, json.size()) << "pick names so that padding is exercised";
}

TEST(Safetensors, WritesMetadataFirstInHeader) {
  const fs::path path = test_dir() / "meta.safetensors";
  write_safetensors(path, {}, {{"format", "pt"}});
  const std::string bytes = slurp(path);
  EXPECT_EQ(bytes.substr(8, 32), R"({"__metadata__":{"format":"pt"}})");
  const auto file = SafetensorsFile::open(path);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.metadata().at("format"), "pt");
}

TEST(Safetensors, FindReturnsNullAndAtNamesFileAndTensorWhenAbsent) {
  const fs::path path = test_dir() / "model.safetensors";
  const float x = 1;
  write_safetensors(path, {{"x", DType::F32, {}, &x, 4}});
  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.find("y"), nullptr);
  ASSERT_NE(file.find("x"), nullptr);
  try {
    file.at("encoder.missing");
    FAIL() << "at() did not throw";
  } catch (const condense::Error& e) {
    EXPECT_EQ(std::string(e.what()), path.string() + ": tensor 'encoder.missing' not found");
  }
}

TEST(Safetensors, MovingTheFileKeepsViewsValid) {
  const fs::path path = test_dir() / "move.safetensors";
  const std::vector<float> v{1, 2, 3};
  write_safetensors(path, {{"v", DType::F32, {3}, v.data(), 12}});
  auto first = SafetensorsFile::open(path);
  const std::byte* data = first.at("v").data;
  SafetensorsFile second = std::move(first);
  EXPECT_EQ(second.at("v").data, data);
  EXPECT_EQ(values_of<float>(second.at("v")), v);
  auto third = SafetensorsFile::open(path);
  third = std::move(second);  // unmaps third's own mapping, takes second's
  EXPECT_EQ(values_of<float>(third.at("v")), v);
}

TEST(Safetensors, WriteReplacesExistingFile) {
  const fs::path path = test_dir() / "replace.safetensors";
  const float one = 1, two = 2;
  write_safetensors(path, {{"old", DType::F32, {}, &one, 4}});
  write_safetensors(path, {{"new", DType::F32, {}, &two, 4}});
  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.find("old"), nullptr);
  EXPECT_EQ(values_of<float>(file.at("new")), std::vector<float>{2});
  EXPECT_EQ(std::distance(fs::directory_iterator(path.parent_path()), fs::directory_iterator()), 1);
}

// ---------------------------------------------------------------------------------------------
// Interoperability

TEST(Safetensors, ReadsFileWrittenByReferencePythonLibrary) {
  if (!have_python()) GTEST_SKIP() << "CONDENSE_PYTHON not set";
  const fs::path dir = test_dir();
  const fs::path path = dir / "py.safetensors";
  ASSERT_EQ(run_python(dir, R"(
import sys
import numpy as np
from safetensors.numpy import save_file
save_file({
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "f64": np.array([1.5, -2.25]),
    "f16": np.array([1.0, 0.5, -2.0], dtype=np.float16),
    "i64": np.array([-1, 2**40], dtype=np.int64),
    "i8": np.array([-128, 0, 127], dtype=np.int8),
    "u8": np.array([1, 2, 3, 255], dtype=np.uint8),
    "flags": np.array([True, False, True]),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "scalar": np.array(7, dtype=np.int32),
}, sys.argv[1], metadata={"format": "np"})
)",
                       path),
            0);

  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "np"}}));
  ASSERT_EQ(file.tensors().size(), 9u);
  for (std::size_t i = 0; i + 1 < file.tensors().size(); ++i) {
    const auto& t = file.tensors()[i];
    EXPECT_EQ(t.data + t.nbytes, file.tensors()[i + 1].data) << "tensors() not in offset order at " << t.name;
  }
  EXPECT_EQ(file.at("f32").dtype, DType::F32);
  EXPECT_EQ(file.at("f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(values_of<float>(file.at("f32")), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(values_of<double>(file.at("f64")), (std::vector<double>{1.5, -2.25}));
  EXPECT_EQ(file.at("f16").dtype, DType::F16);
  EXPECT_EQ(values_of<std::uint16_t>(file.at("f16")), (std::vector<std::uint16_t>{0x3C00, 0x3800, 0xC000}));
  EXPECT_EQ(values_of<int64_t>(file.at("i64")), (std::vector<int64_t>{-1, int64_t{1} << 40}));
  EXPECT_EQ(values_of<int8_t>(file.at("i8")), (std::vector<int8_t>{-128, 0, 127}));
  EXPECT_EQ(values_of<std::uint8_t>(file.at("u8")), (std::vector<std::uint8_t>{1, 2, 3, 255}));
  EXPECT_EQ(file.at("flags").dtype, DType::BOOL);
  EXPECT_EQ(values_of<std::uint8_t>(file.at("flags")), (std::vector<std::uint8_t>{1, 0, 1}));
  EXPECT_EQ(file.at("empty").shape, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(file.at("empty").nbytes, 0u);
  EXPECT_TRUE(file.at("scalar").shape.empty());
  EXPECT_EQ(values_of<int32_t>(file.at("scalar")), std::vector<int32_t>{7});
}

TEST(Safetensors, FileWrittenHereIsReadByReferencePythonLibrary) {
  if (!have_python()) GTEST_SKIP() << "CONDENSE_PYTHON not set";
  const fs::path dir = test_dir();
  const fs::path path = dir / "ours.safetensors";
  const std::vector<float> f32{0, 1, 2, 3, 4, 5};
  const std::vector<std::uint16_t> f16{0x3C00, 0xC000};
  const std::vector<int64_t> i64{-1, 5};
  const std::vector<std::uint8_t> flags{1, 0};
  const std::uint8_t u8 = 200;  // one byte, so everything after it is unaligned
  write_safetensors(path,
                    {{"u8", DType::U8, {1}, &u8, 1},
                     {"f32", DType::F32, {2, 3}, f32.data(), 24},
                     {"f16", DType::F16, {2}, f16.data(), 4},
                     {"i64", DType::I64, {2}, i64.data(), 16},
                     {"flags", DType::BOOL, {2}, flags.data(), 2},
                     {"empty", DType::F32, {3, 0}, nullptr, 0}},
                    {{"format", "pt"}});
  EXPECT_EQ(run_python(dir, R"(
import sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], "np") as f:
    md = f.metadata()
checks = [
    md == {"format": "pt"},
    t["u8"].dtype == np.uint8 and t["u8"].tolist() == [200],
    t["f32"].dtype == np.float32 and t["f32"].tolist() == [[0, 1, 2], [3, 4, 5]],
    t["f16"].dtype == np.float16 and t["f16"].tolist() == [1.0, -2.0],
    t["i64"].dtype == np.int64 and t["i64"].tolist() == [-1, 5],
    t["flags"].dtype == np.bool_ and t["flags"].tolist() == [True, False],
    t["empty"].shape == (3, 0),
]
print("python checks:", checks)
sys.exit(0 if all(checks) else 1)
)",
                       path),
            0);
}

TEST(Safetensors, ReadsTeacherCheckpoint) {
  const char* dir = std::getenv("CONDENSE_TEACHER_DIR");
  if (dir == nullptr || *dir == '\0') GTEST_SKIP() << "CONDENSE_TEACHER_DIR not set";
  const fs::path path = fs::path(dir) / "model.safetensors";
  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.tensors().size(), 104u);
  const auto& emb = file.at("embeddings.word_embeddings.weight");
  EXPECT_EQ(emb.dtype, DType::F32);
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{30522, 384}));
  EXPECT_EQ(emb.nbytes, 30522u * 384u * 4u);
  const auto first = values_of<float>(emb);
  EXPECT_NEAR(first[0], -0.01998901f, 1e-6);
  const auto& q = file.at("encoder.layer.0.attention.self.query.weight");
  EXPECT_EQ(q.shape, (std::vector<int64_t>{384, 384}));
  std::size_t total = 0;
  for (const auto& t : file.tensors()) total += t.nbytes;
  std::uint64_t header_len = 0;
  const std::string prefix = slurp_prefix(path);
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(prefix[i]);
  EXPECT_EQ(fs::file_size(path), 8 + header_len + total);  // tensors cover the data section exactly
  EXPECT_EQ(file.metadata().at("format"), "pt");
}

// ---------------------------------------------------------------------------------------------
// Hostile input: the length prefix

TEST(Safetensors, RejectsMissingFile) {
  const fs::path path = test_dir() / "absent.safetensors";
  expect_error(open_error(path), path, {"cannot open file"});
}

TEST(Safetensors, RejectsDirectory) {
  const fs::path path = test_dir() / "dir.safetensors";
  fs::create_directory(path);
  expect_error(open_error(path), path, {"not a regular file"});
}

TEST(Safetensors, RejectsFileShorterThanEightBytes) {
  const fs::path path = test_dir() / "short.safetensors";
  std::ofstream(path, std::ios::binary).write("\x02\x00\x00", 3);
  expect_error(open_error(path), path, {"file is 3 bytes, shorter than the 8-byte header-length prefix"});
}

TEST(Safetensors, RejectsZeroHeaderLength) { expect_rejected("", "", {"header length is 0"}); }

TEST(Safetensors, RejectsHeaderClaimingTwoToTheSixtyThirdBytes) {
  const fs::path path = write_raw(test_dir() / "huge.safetensors", "{}", "", std::uint64_t{1} << 63);
  expect_error(open_error(path), path, {"header length 9223372036854775808 exceeds the 100000000-byte limit"});
}

TEST(Safetensors, RejectsHeaderLengthBeyondFile) {
  const fs::path path = write_raw(test_dir() / "long.safetensors", "{}", "", 1000);
  expect_error(open_error(path), path, {"header length 1000 exceeds the 2 bytes after the 8-byte prefix"});
}

TEST(Safetensors, RejectsTruncatedFileCutInsideData) {
  const fs::path path = test_dir() / "model.safetensors";
  const std::vector<float> a(16, 1.0f), b(16, 2.0f);
  write_safetensors(path,
                    {{"encoder.a", DType::F32, {4, 4}, a.data(), 64}, {"encoder.b", DType::F32, {16}, b.data(), 64}});
  fs::resize_file(path, fs::file_size(path) - 5);
  expect_error(open_error(path), path,
               {"tensor 'encoder.b': data_offsets end 128 is beyond the data section (123 bytes"});
}

TEST(Safetensors, RejectsTruncatedFileCutInsideHeader) {
  const fs::path path = test_dir() / "model.safetensors";
  const std::vector<float> a(16, 1.0f);
  write_safetensors(path, {{"encoder.a", DType::F32, {4, 4}, a.data(), 64}});
  fs::resize_file(path, 20);
  expect_error(open_error(path), path, {"header length", "exceeds the 12 bytes after the 8-byte prefix", "truncated"});
}

// Hostile input: the header as a whole

TEST(Safetensors, RejectsHeaderThatIsNotUtf8) {
  expect_rejected("{\"w\xff\":{}}", "", {"header is not valid UTF-8 (byte 0xff at header offset 3)"});
}

TEST(Safetensors, RejectsHeaderThatIsNotJson) {
  expect_rejected(R"({"w": {"dtype": )", "", {"header is not valid JSON"});
}

TEST(Safetensors, RejectsHeaderThatIsNotAnObject) {
  expect_rejected("[1, 2]  ", "", {"header is a JSON array, expected an object"});
}

TEST(Safetensors, RejectsHeaderNotStartingWithBrace) {
  expect_rejected(" {}", "", {"header starts with byte 0x20, expected '{'"});
}

TEST(Safetensors, RejectsHeaderNestedTooDeeply) {
  expect_rejected(R"({"w":{"x":[[[[[[[[[[1]]]]]]]]]]}})", "", {"header nests JSON deeper than 8 levels", "'w'"});
}

TEST(Safetensors, RejectsDuplicateTensorNames) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  kEightBytes, {"duplicate key 'w'"});
}

TEST(Safetensors, RejectsDuplicateFieldInEntry) {
  expect_rejected(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': duplicate field 'dtype'"});
}

TEST(Safetensors, RejectsMetadataThatIsNotAnObject) {
  expect_rejected(R"({"__metadata__":["format","pt"]})", "", {"__metadata__ is a JSON array, expected an object"});
}

TEST(Safetensors, RejectsMetadataWithNonStringValue) {
  expect_rejected(R"({"__metadata__":{"epoch":3}})", "",
                  {"__metadata__ 'epoch' is a JSON number (3), expected a string"});
}

// Hostile input: one entry

TEST(Safetensors, RejectsEntryThatIsNotAnObject) {
  expect_rejected(R"({"w":5})", "", {"tensor 'w': entry is a JSON number, expected an object"});
}

TEST(Safetensors, RejectsEntryWithoutDtype) {
  expect_rejected(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", kEightBytes, {"tensor 'w': missing field 'dtype'"});
}

TEST(Safetensors, RejectsEntryWithoutShape) {
  expect_rejected(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", kEightBytes, {"tensor 'w': missing field 'shape'"});
}

TEST(Safetensors, RejectsEntryWithoutDataOffsets) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2]}})", kEightBytes, {"tensor 'w': missing field 'data_offsets'"});
}

TEST(Safetensors, RejectsDtypeThatIsNotAString) {
  expect_rejected(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': field 'dtype' is a JSON number (4), expected a string"});
}

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected(R"({"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': unknown dtype 'F31' (expected one of F64, F32,"});
}

TEST(Safetensors, RejectsShapeThatIsNotAnArray) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': field 'shape' is a JSON string (\"2\"), expected an array"});
}

TEST(Safetensors, RejectsNegativeShapeDim) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': shape[1] is -2, expected a non-negative integer"});
}

TEST(Safetensors, RejectsFractionalShapeDim) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': shape[0] is 2.0, expected a non-negative integer"});
}

TEST(Safetensors, RejectsShapeWhoseElementCountOverflows) {
  expect_rejected(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': shape [4294967296,4294967296] has more than 2^63-1 elements"});
}

TEST(Safetensors, RejectsShapeWhoseByteCountOverflows) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", kEightBytes,
                  {"tensor 'w': dtype F32 shape [4611686018427387904] needs more than 2^64 bytes"});
}

TEST(Safetensors, RejectsDataOffsetsThatAreNotAnArray) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":"0,8"}})", kEightBytes,
                  {"tensor 'w': field 'data_offsets' is \"0,8\", expected [begin, end]"});
}

TEST(Safetensors, RejectsDataOffsetsWithNegativeValue) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", kEightBytes,
                  {"tensor 'w': field 'data_offsets' is [-1,8], expected [begin, end] (two non-negative integers)"});
}

TEST(Safetensors, RejectsDataOffsetsWithThreeValues) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", kEightBytes,
                  {"tensor 'w': field 'data_offsets' is [0,4,8], expected [begin, end]"});
}

TEST(Safetensors, RejectsDataOffsetsWithBeginAfterEnd) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", kEightBytes,
                  {"tensor 'w': data_offsets [8,0] has begin > end"});
}

TEST(Safetensors, RejectsDataOffsetsBeyondDataSection) {
  expect_rejected(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", kEightBytes,
                  {"tensor 'w': data_offsets end 16 is beyond the data section (8 bytes"});
}

TEST(Safetensors, RejectsSpanThatDoesNotMatchDtypeAndShape) {
  expect_rejected(
      R"({"encoder.layer.0.attention.self.query.weight":{"dtype":"F32","shape":[384,384],"data_offsets":[0,100]}})",
      std::string(100, '\0'),
      {"bad.safetensors: tensor 'encoder.layer.0.attention.self.query.weight': dtype F32 shape [384,384] needs "
       "589824 bytes but data_offsets span 100"});
}

// Hostile input: how the entries tile the data section

TEST(Safetensors, RejectsOverlappingSpans) {
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  std::string(12, '\0'), {"tensor 'b': data_offsets [4,12] overlap tensor 'a' which ends at 8"});
}

TEST(Safetensors, RejectsGapBetweenTensors) {
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                  std::string(12, '\0'), {"tensor 'b': data_offsets begin 8 leaves bytes [4,8) unused"});
}

TEST(Safetensors, RejectsGapBeforeFirstTensor) {
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", kEightBytes,
                  {"tensor 'a': data_offsets begin 4 leaves bytes [0,4) unused"});
}

TEST(Safetensors, RejectsTrailingBytesAfterLastTensor) {
  expect_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", kEightBytes,
                  {"data section is 8 bytes but the tensors cover only 4 (trailing bytes"});
}

TEST(Safetensors, AcceptsEmptyTensorsSharingAnOffset) {
  const fs::path path = write_raw(test_dir() / "ok.safetensors",
                                  R"({"z1":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                                  R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("z0":{"dtype":"I64","shape":[2,0],"data_offsets":[4,4]}})",
                                  std::string(4, '\0'));
  const auto file = SafetensorsFile::open(path);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "a");
  EXPECT_EQ(file.tensors()[1].name, "z0");
  EXPECT_EQ(file.tensors()[2].name, "z1");
}

TEST(Safetensors, ErrorMessageEscapesControlCharactersInNames) {
  expect_rejected(R"({"a\nb":{"dtype":"X","shape":[],"data_offsets":[0,0]}})", "",
                  {"tensor 'a\\x0ab': unknown dtype 'X'"});
}

// ---------------------------------------------------------------------------------------------
// Writer failures

TEST(Safetensors, WriteWithDuplicateNamesThrowsAndLeavesNoFile) {
  const fs::path dir = test_dir();
  const fs::path path = dir / "dup.safetensors";
  const float x = 1;
  try {
    write_safetensors(path, {{"x", DType::F32, {}, &x, 4}, {"x", DType::F32, {}, &x, 4}});
    FAIL() << "no error";
  } catch (const condense::Error& e) {
    expect_error(e.what(), path, {"tensor 'x': duplicate tensor name"});
  }
  EXPECT_TRUE(fs::is_empty(dir)) << "write left a file (or temp file) behind";
}

TEST(Safetensors, WriteFailureLeavesExistingTargetUntouched) {
  const fs::path dir = test_dir();
  const fs::path path = dir / "keep.safetensors";
  const std::vector<float> v{1, 2};
  write_safetensors(path, {{"v", DType::F32, {2}, v.data(), 8}});
  const std::string before = slurp(path);
  EXPECT_THROW(write_safetensors(path, {{"w", DType::F32, {3}, v.data(), 8}}), condense::Error);
  EXPECT_EQ(slurp(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  EXPECT_EQ(values_of<float>(SafetensorsFile::open(path).at("v")), v);
}

TEST(Safetensors, WriteRejectsByteCountNotMatchingShape) {
  const fs::path path = test_dir() / "n.safetensors";
  const std::vector<float> v(4);
  try {
    write_safetensors(path, {{"w", DType::F32, {3}, v.data(), 16}});
    FAIL() << "no error";
  } catch (const condense::Error& e) {
    expect_error(e.what(), path, {"tensor 'w': dtype F32 shape [3] needs 12 bytes but 16 were given"});
  }
}

TEST(Safetensors, WriteRejectsNegativeDim) {
  const fs::path path = test_dir() / "neg.safetensors";
  try {
    write_safetensors(path, {{"w", DType::F32, {2, -1}, nullptr, 0}});
    FAIL() << "no error";
  } catch (const condense::Error& e) {
    expect_error(e.what(), path, {"tensor 'w': shape[1] is -1"});
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(Safetensors, WriteRejectsReservedMetadataName) {
  const fs::path path = test_dir() / "reserved.safetensors";
  try {
    write_safetensors(path, {{"__metadata__", DType::U8, {0}, nullptr, 0}});
    FAIL() << "no error";
  } catch (const condense::Error& e) {
    expect_error(e.what(), path, {"tensor name '__metadata__' is reserved"});
  }
  EXPECT_FALSE(fs::exists(path));
}
