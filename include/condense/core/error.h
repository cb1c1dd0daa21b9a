#pragma once
/// \file
/// The one exception type of condense and the check macro that raises it.
///
/// The library never aborts or exits: it throws condense::Error, and only the CLI's main()
/// decides to print one line and return non-zero. Messages name what was expected, what was
/// found, and — for input errors — the file and the field.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace condense {

/// Every error condense raises. what() is a single line meant for the user.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// Throws condense::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace condense

/// CONDENSE_CHECK(cond, "fmt {}", values...): throws condense::Error with the message when cond is false.
#define CONDENSE_CHECK(cond, ...)      \
  do {                                 \
    if (!(cond)) {                     \
      ::condense::fail(__VA_ARGS__);   \
    }                                  \
  } while (0)
