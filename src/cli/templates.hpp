// The files `stateroom new` writes, compiled in from src/cli/templates/ and, for service.cpp, from
// examples/counter/ ({{name}} and {{target}} are replaced by the project's name and CMake target).
#pragma once

#include <map>
#include <string_view>

namespace stateroom::cli {

/// Template file name (as in src/cli/templates/) → contents.
const std::map<std::string_view, std::string_view>& templates();

}  // namespace stateroom::cli
