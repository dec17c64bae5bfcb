// A Stateroom project: a directory with stateroom.toml, its service sources and static files, and
// how it is built to WebAssembly with the guest SDK.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace stateroom::cli {

/// A problem with what the user gave us (a project, its configuration, an argument): `what()` is one
/// line that says what to do.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where the guest SDK is: next to an installed `stateroom` (../share/stateroom/guest and
/// ../include), else in the source tree it was built from.
struct GuestSdk {
  std::filesystem::path guest_dir;    ///< StateroomGuest.cmake and wasm32-wasi.cmake
  std::filesystem::path include_dir;  ///< stateroom/service.hpp, stateroom/guest.hpp

  /// Throws UserError when neither place has it.
  static GuestSdk locate();
};

struct Project {
  static constexpr const char* config_name = "stateroom.toml";

  std::filesystem::path dir;          ///< the directory holding stateroom.toml
  std::filesystem::path config_file;  ///< its stateroom.toml
  std::optional<std::filesystem::path> static_dir;  ///< `static_files`, absolute
  std::string target;                           ///< [service] target: a CMake target of the project
  std::vector<std::filesystem::path> sources;   ///< [service] sources (absolute), instead of a target
  std::vector<std::string> server_args;  ///< [server] as `stateroom serve` arguments, e.g. {"--port", "8080"}

  /// The project in `from` or the nearest parent with a stateroom.toml. Throws UserError.
  static Project find(const std::filesystem::path& from);
  /// Reads `config_file`. Throws UserError naming the file, line and key of a problem.
  static Project load(const std::filesystem::path& config_file);
  /// The name the service builds under: the target, or `service` for a list of sources.
  std::string target_name() const { return target.empty() ? "service" : target; }
};

/// One file's state, to notice edits.
struct FileStamp {
  std::filesystem::file_time_type modified;
  std::uintmax_t size = 0;
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

/// The files a project's build reads: everything under its directory except the build state
/// (.stateroom/), dist/, the static files (served as they are) and hidden directories; plus
/// sources listed from elsewhere.
std::map<std::filesystem::path, FileStamp> source_snapshot(const Project& project);

struct BuildResult {
  bool ok = false;
  std::filesystem::path module;       ///< the built .wasm (when ok)
  std::string output;                 ///< what the failing step printed (compiler errors)
  std::chrono::milliseconds took{0};  ///< configure + build time
};

/// Builds the project's service to WebAssembly with CMake and the guest SDK, in
/// <project>/.stateroom/build (configured once, then incremental).
BuildResult build_project(const Project& project, const GuestSdk& sdk);

}  // namespace stateroom::cli
