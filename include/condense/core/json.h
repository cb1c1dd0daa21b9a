#pragma once
/// \file
/// Reading optional, typed fields of JSON configuration files with errors that name the file and
/// the field.

#include <nlohmann/json.hpp>

#include <string>

#include "condense/core/error.h"

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

}  // namespace condense
