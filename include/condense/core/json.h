#pragma once
/// \file
/// Reading optional, typed fields of JSON configuration files with errors that name the file and
/// the field.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "condense/core/error.h"
#include "condense/core/file.h"

namespace condense {

/// j[key] as T, or `fallback` when the key is absent or null; a value of the wrong type throws
/// "<source>: field '<key>' has the wrong type (<value>)".
template <typename T>
T json_get_or(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: field '{}' has the wrong type ({})", source, key, j[key].dump());
  }
}

/// Parses a JSON file; a syntax error throws "<path>: not valid JSON (<detail>)".
inline nlohmann::json read_json_file(const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path.string(), e.what());
  }
}

}  // namespace condense
