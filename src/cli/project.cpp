#include "project.hpp"

#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>
#include <unistd.h>

#include "options.hpp"
#include "process.hpp"

namespace fs = std::filesystem;

namespace stateroom::cli {

namespace {

std::string known_server_keys() {
  std::string out;
  for (const auto& k : server_option_table())
    if (!k.key.empty()) out += (out.empty() ? "" : ", ") + std::string(k.key);
  return out;
}

/// Reads a project file, reporting problems as `file:line: message`.
class ConfigReader {
 public:
  explicit ConfigReader(fs::path file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::source_region& where, const std::string& message) const {
    throw UserError(fmt::format("{}:{}: {}", file_.string(), where.begin.line, message));
  }

  std::string string(const toml::node& node, const std::string& key, std::string_view expected) const {
    if (const auto* s = node.as_string()) return s->get();
    fail(node.source(), fmt::format("{} must be {}", key, expected));
  }

  /// A size or duration: a string with a unit, or a bare integer (bytes, seconds).
  template <class Parse>
  std::string measure(const toml::node& node, const std::string& key, std::string_view what, Parse parse) const {
    if (const auto* i = node.as_integer()) {
      if (i->get() < 0) fail(node.source(), fmt::format("{} must not be negative", key));
      return std::to_string(i->get());
    }
    const std::string text = string(node, key, fmt::format("{} (a string like \"{}\", or an integer)", what,
                                                           what == "a size" ? "1MiB" : "30s"));
    if (!parse(text)) fail(node.source(), fmt::format("{}: '{}' is not {}", key, text, what));
    return text;
  }

  std::int64_t integer(const toml::node& node, const std::string& key, std::int64_t lo, std::int64_t hi) const {
    const auto* i = node.as_integer();
    if (!i || i->get() < lo || i->get() > hi)
      fail(node.source(), fmt::format("{} must be an integer from {} to {}", key, lo, hi));
    return i->get();
  }

  /// Origins: one string (comma-separated), or an array of strings.
  std::string origins(const toml::node& node, const std::string& key) const {
    std::string list;
    if (const auto* items = node.as_array()) {
      for (const auto& item : *items) list += (list.empty() ? "" : ",") + string(item, key, "origins (strings)");
    } else {
      list = string(node, key, "an origin or an array of origins");
    }
    if (!parse_origins(list))
      fail(node.source(), fmt::format("{}: '{}' is not a list of origins (scheme://host[:port] or *)", key, list));
    return list;
  }

  /// A path below `base` naming a directory (or, with `directory` false, a file).
  fs::path existing(const toml::node& node, const std::string& key, const fs::path& base, bool directory = true) const {
    const fs::path path = base / string(node, key, directory ? "a directory (a string)" : "a file name (a string)");
    std::error_code ec;
    if (directory ? !fs::is_directory(path, ec) : !fs::is_regular_file(path, ec))
      fail(node.source(), fmt::format("{}: {} is not a {}", key, path.lexically_normal().string(),
                                      directory ? "directory" : "file"));
    return path.lexically_normal();
  }

 private:
  fs::path file_;
};

void read_server(const toml::table& server, const ConfigReader& reader, Project& project) {
  for (auto&& [key, node] : server) {
    const std::string name = "server." + std::string(key.str());
    // The same table as the command line's: a key is an option's, checked as its value is.
    const OptionInfo* known = nullptr;
    for (const auto& k : server_option_table())
      if (!k.key.empty() && k.key == key.str()) known = &k;
    if (!known)
      reader.fail(key.source(), fmt::format("unknown key '{}' (known: {})", name, known_server_keys()));
    std::string value;
    switch (known->kind) {
      case ValueKind::text:
        value = reader.string(node, name, "a string");
        break;
      case ValueKind::port:
        value = std::to_string(reader.integer(node, name, 0, 65535));
        break;
      case ValueKind::threads:
        value = std::to_string(reader.integer(node, name, 0, 1024));
        break;
      case ValueKind::rooms:
        value = std::to_string(reader.integer(node, name, 1, 1000000));
        break;
      case ValueKind::count:
        value = std::to_string(reader.integer(node, name, 0, 100000000));
        break;
      case ValueKind::percent:
        if (node.as_string()) {
          value = node.as_string()->get();
          if (!parse_percent(value))
            reader.fail(node.source(), name + " must be a percentage from 1 to 100 (50 or \"50%\")");
        } else {
          value = std::to_string(reader.integer(node, name, 1, 100));
        }
        break;
      case ValueKind::size:
        value = reader.measure(node, name, "a size", parse_size);
        break;
      case ValueKind::duration:
        value = reader.measure(node, name, "a duration", parse_duration);
        break;
      case ValueKind::duration_or_off:
        if (node.as_string() && node.as_string()->get() == "off") {
          value = "off";
        } else {
          value = reader.measure(node, name, "a duration or \"off\"", parse_duration);
        }
        break;
      case ValueKind::grace:
        if (node.as_string() && parse_room_grace(node.as_string()->get())) {
          value = node.as_string()->get();
        } else {
          value = reader.measure(node, name, "a grace period (never, immediate or a duration)", parse_duration);
        }
        break;
      case ValueKind::flag:
        if (!node.as_boolean()) reader.fail(node.source(), name + " must be true or false");
        if (!node.as_boolean()->get()) continue;
        project.server_args.emplace_back(known->flag);
        continue;
      case ValueKind::toggle:
        if (node.as_boolean()) {
          value = node.as_boolean()->get() ? "on" : "off";
        } else {
          value = reader.string(node, name, "true or false");
          if (value != "on" && value != "off") reader.fail(node.source(), name + " must be true or false");
        }
        break;
      case ValueKind::level: {
        value = reader.string(node, name, "a log level");
        if (!is_log_level(value))
          reader.fail(node.source(), fmt::format("{}: '{}' is not {}", name, value, log_level_names()));
        break;
      }
      case ValueKind::path:
        value = reader.existing(node, name, project.dir).string();
        break;
      case ValueKind::output_dir:
        value = (project.dir / reader.string(node, name, "a directory")).lexically_normal().string();
        break;
      case ValueKind::file:
        value = reader.existing(node, name, project.dir, false).string();
        break;
      case ValueKind::origins:
        value = reader.origins(node, name);
        break;
    }
    project.server_args.emplace_back(known->flag);
    project.server_args.push_back(std::move(value));
  }
}

void read_service(const toml::table& service, const toml::source_region& where, const ConfigReader& reader,
                  Project& project) {
  for (auto&& [key, node] : service) {
    if (key.str() == "target") {
      project.target = reader.string(node, "service.target", "the name of a CMake target (a string)");
      if (project.target.empty()) reader.fail(node.source(), "service.target must not be empty");
    } else if (key.str() == "sources") {
      const auto* list = node.as_array();
      if (!list || list->empty())
        reader.fail(node.source(), "service.sources must be a non-empty array of file names");
      for (const auto& item : *list) {
        const fs::path file = project.dir / reader.string(item, "service.sources", "file names (strings)");
        std::error_code ec;
        if (!fs::is_regular_file(file, ec))
          reader.fail(item.source(), fmt::format("service.sources: {} does not exist", file.lexically_normal().string()));
        project.sources.push_back(file.lexically_normal());
      }
    } else {
      reader.fail(key.source(), fmt::format("unknown key 'service.{}' (known: target, sources)", key.str()));
    }
  }
  if (project.target.empty() == project.sources.empty())
    reader.fail(where, "[service] needs either `target` (a CMake target of the project's CMakeLists.txt) or "
                       "`sources` (the files to build), not both");
  std::error_code ec;
  if (!project.target.empty() && !fs::exists(project.dir / "CMakeLists.txt", ec))
    reader.fail(where, fmt::format("service.target '{}' needs a CMakeLists.txt in {}", project.target,
                                   project.dir.string()));
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Writes `text` to `file` unless it already holds exactly that (so CMake sees no change).
void write_if_changed(const fs::path& file, const std::string& text) {
  std::error_code ec;
  if (fs::exists(file, ec) && read_text(file) == text) return;
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  return false;
}

/// CMake's quoting for a path in a generated CMakeLists.txt.
std::string cmake_quoted(const fs::path& p) {
  std::string out = "\"";
  for (char c : p.generic_string()) {
    if (c == '"' || c == '\\' || c == '$') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

GuestSdk GuestSdk::locate() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<GuestSdk> candidates;
  if (!ec) {
    const fs::path prefix = exe.parent_path().parent_path();
    candidates.push_back({prefix / "share/stateroom/guest", prefix / "include"});
  }
  candidates.push_back({STATEROOM_SOURCE_GUEST_DIR, STATEROOM_SOURCE_INCLUDE_DIR});
  for (const auto& c : candidates) {
    if (fs::exists(c.guest_dir / "StateroomGuest.cmake", ec) && fs::exists(c.include_dir / "stateroom/guest.hpp", ec))
      return c;
  }
  throw UserError(fmt::format("cannot find Stateroom's guest SDK (looked in {} and {}); reinstall stateroom",
                              candidates.front().guest_dir.string(), candidates.back().guest_dir.string()));
}

Project Project::find(const fs::path& from) {
  std::error_code ec;
  for (fs::path dir = fs::absolute(from, ec); !dir.empty(); dir = dir.parent_path()) {
    if (fs::is_regular_file(dir / config_name, ec)) return load(dir / config_name);
    if (dir == dir.root_path()) break;
  }
  throw UserError(fmt::format("no {} in {} or any parent directory: run this in a project (`stateroom new NAME` "
                              "creates one)",
                              config_name, fs::absolute(from, ec).string()));
}

Project Project::load(const fs::path& config_file) {
  Project project;
  std::error_code ec;
  project.config_file = fs::absolute(config_file, ec).lexically_normal();
  project.dir = project.config_file.parent_path();
  const ConfigReader reader(project.config_file);
  toml::table config;
  try {
    config = toml::parse_file(project.config_file.string());
  } catch (const toml::parse_error& e) {
    reader.fail(e.source(), std::string(e.description()));
  }
  bool has_service = false;
  for (auto&& [key, node] : config) {
    if (key.str() == "static_files") {
      project.static_dir = reader.existing(node, "static_files", project.dir);
    } else if (key.str() == "service") {
      if (!node.as_table()) reader.fail(node.source(), "service must be a table: [service]");
      read_service(*node.as_table(), node.source(), reader, project);
      has_service = true;
    } else if (key.str() == "server") {
      if (!node.as_table()) reader.fail(node.source(), "server must be a table: [server]");
      read_server(*node.as_table(), reader, project);
    } else {
      reader.fail(key.source(), fmt::format("unknown key '{}' (known: static_files, [service], [server])", key.str()));
    }
  }
  if (!has_service)
    throw UserError(fmt::format("{}: no [service] table: say what to build, e.g. [service] target = \"counter\"",
                                project.config_file.string()));
  return project;
}

std::map<fs::path, FileStamp> source_snapshot(const Project& project) {
  std::map<fs::path, FileStamp> files;
  std::error_code ec;
  auto add = [&](const fs::path& file) {
    std::error_code e;
    const auto modified = fs::last_write_time(file, e);
    const auto size = fs::file_size(file, e);
    if (!e) files[file] = {modified, size};
  };
  for (auto it = fs::recursive_directory_iterator(project.dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& path = it->path();
    const std::string name = path.filename().string();
    if (it->is_directory(ec)) {
      if (name.starts_with(".") || path == project.dir / "dist" || (project.static_dir && path == *project.static_dir))
        it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && !name.starts_with(".")) add(path);
  }
  for (const auto& source : project.sources) add(source);
  return files;
}

BuildResult build_project(const Project& project, const GuestSdk& sdk) {
  const auto start = std::chrono::steady_clock::now();
  BuildResult result;
  const fs::path state = project.dir / ".stateroom";
  const fs::path build = state / "build";
  fs::path source = project.dir;
  if (!project.sources.empty()) {
    // A list of sources: a generated CMake project builds them.
    source = state / "generated";
    std::string files;
    for (const auto& s : project.sources) files += " " + cmake_quoted(s);
    write_if_changed(source / "CMakeLists.txt",
                     "# Generated by stateroom from " + project.config_file.filename().string() + "\n"
                     "cmake_minimum_required(VERSION 3.25)\n"
                     "project(stateroom_service LANGUAGES CXX)\n"
                     "include(\"${STATEROOM_GUEST_DIR}/StateroomGuest.cmake\")\n"
                     "stateroom_add_wasm_service(service" + files + ")\n");
  }
  auto finish = [&] {
    result.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    return result;
  };

  std::error_code ec;
  if (!fs::exists(build / "CMakeCache.txt", ec)) {
    std::vector<std::string> configure = {"cmake", "-S", source.string(), "-B", build.string()};
    if (on_path("ninja")) configure.insert(configure.end(), {"-G", "Ninja"});
    configure.insert(configure.end(), {
        "-DCMAKE_BUILD_TYPE=Release",
        "-DCMAKE_TOOLCHAIN_FILE=" + (sdk.guest_dir / "wasm32-wasi.cmake").string(),
        "-DSTATEROOM_GUEST_DIR=" + sdk.guest_dir.string(),
        "-DSTATEROOM_INCLUDE_DIR=" + sdk.include_dir.string(),
        "-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=" + (build / "out").string(),
    });
    auto configured = run_command(configure, project.dir);
    if (configured.exit_code != 0) {
      fs::remove(build / "CMakeCache.txt", ec);  // configure again next time
      result.output = "$ " + describe_command(configure) + "\n" + configured.output;
      return finish();
    }
  }
  const std::vector<std::string> make = {"cmake", "--build", build.string(), "--target", project.target_name()};
  auto built = run_command(make, project.dir);
  if (built.exit_code != 0) {
    result.output = built.output;
    return finish();
  }
  result.module = build / "out" / (project.target_name() + ".wasm");
  if (!fs::exists(result.module, ec)) {
    result.output = fmt::format("the build made no {}: does CMakeLists.txt call stateroom_add_wasm_service({} ...)?",
                                result.module.string(), project.target_name());
    return finish();
  }
  result.ok = true;
  return finish();
}

}  // namespace stateroom::cli
