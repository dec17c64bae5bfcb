#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>

#include "../common/little_endian.hpp"
#include "../common/text.hpp"
#include "guest.hpp"
#include "interface_v1.hpp"
#include "interface_v2.hpp"
#include "module_impl.hpp"

namespace stateroom::wasm {

namespace {

using GuestV1 = detail::Guest<detail::InterfaceV1>;
using GuestV2 = detail::Guest<detail::InterfaceV2>;
using detail::InterfaceV1;
using detail::InterfaceV2;

constexpr std::string_view wasm_magic("\0asm", 4);

}  // namespace
}  // namespace stateroom::wasm

#if STATEROOM_WASMTIME_WRAPPER
// Defined by our Wasmtime wrapper crate (third_party/wasmtime/src/globals.rs).
struct stateroom_module_globals_t {
  std::uint32_t count;
  std::uint32_t unsupported;
  std::uint32_t imported_mutable;
  std::uint32_t tables;
  std::uint32_t unsupported_tables;
  bool tables_change;
};
extern "C" wasmtime_error_t* stateroom_export_globals(const std::uint8_t* wasm, std::size_t len,
                                                      wasm_byte_vec_t* out, stateroom_module_globals_t* info);
#endif

namespace stateroom::wasm {
namespace {

/// `wasm` with its mutable globals exported for snapshots (into `rewritten`), and what keeps its
/// rooms from being kept, if anything.
std::string_view export_globals(std::string_view wasm, std::string& rewritten, Module::Impl& impl) {
#if STATEROOM_WASMTIME_WRAPPER
  wasm_byte_vec_t out;
  stateroom_module_globals_t info{};
  if (wasmtime_error_t* error = stateroom_export_globals(reinterpret_cast<const std::uint8_t*>(wasm.data()),
                                                         wasm.size(), &out, &info)) {
    impl.not_persistent = "its globals cannot be exported: " + detail::take_message(error);
    return wasm;
  }
  rewritten = detail::take(out);
  impl.globals = info.count;
  impl.tables = info.tables;
  if (info.unsupported_tables) {
    impl.not_persistent = fmt::format("its code changes its tables at run time, and {} of them are imported or hold "
                                      "references other than funcref",
                                      info.unsupported_tables);
  } else if (info.unsupported) {
    impl.not_persistent = fmt::format("{} of its mutable globals are references or vectors", info.unsupported);
  } else if (info.imported_mutable) {
    impl.not_persistent = "it imports mutable globals";
  }
  return rewritten;
#else
  (void)rewritten;
  impl.not_persistent = "this build's Wasmtime (STATEROOM_WASMTIME_ROOT) cannot export a module's globals";
  return wasm;
#endif
}
/// What a snapshot of the module's memory and globals depends on besides its code: the sections
/// that place data in memory and give it meaning (imports, tables, memories, globals, elements —
/// the function indices a table holds, that vtables and function pointers in memory name — data
/// and data count), each with its id and size, hashed. A rebuild that changes only the code of
/// functions keeps it; one that changes a string constant, adds a global or renumbers the
/// functions a table holds does not. The C++ SDK puts sizeof(the service) in static data
/// (STATEROOM_SERVICE_SIZE), so a field added to the service changes it too. Empty when the bytes
/// cannot be walked (the module is refused later on anyway).
std::string data_layout_hash(std::string_view wasm) {
  if (wasm.size() < 8) return {};
  std::string kept;
  std::size_t at = 8;
  while (at < wasm.size()) {
    const auto id = static_cast<std::uint8_t>(wasm[at++]);
    std::uint64_t size = 0;
    for (int shift = 0;; shift += 7) {
      if (at >= wasm.size() || shift > 28) return {};
      const auto byte = static_cast<std::uint8_t>(wasm[at++]);
      size |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) break;
    }
    if (size > wasm.size() - at) return {};
    constexpr std::uint32_t layout_sections = 1u << 2 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 9 | 1u << 11 | 1u << 12;
    if (id < 32 && (layout_sections >> id & 1)) {
      kept += static_cast<char>(id);
      ::stateroom::detail::put_le(kept, size, 8);
      kept.append(wasm.substr(at, size));
    }
    at += size;
  }
  return ::stateroom::detail::sha256_hex(kept);
}

constexpr std::string_view wasi_module = "wasi_snapshot_preview1";

/// A function signature of the interface, all i32.
struct Signature {
  std::uint8_t params;
  std::uint8_t results;
};

std::string describe(Signature s) {
  std::string out = "(";
  for (int i = 0; i < s.params; ++i) out += i ? ", i32" : "i32";
  out += ") -> ";
  out += s.results ? "i32" : "()";
  return out;
}

std::string_view kind_name(wasm_valkind_t kind) {
  switch (kind) {
    case WASM_I32:
      return "i32";
    case WASM_I64:
      return "i64";
    case WASM_F32:
      return "f32";
    case WASM_F64:
      return "f64";
    case WASMTIME_V128:
      return "v128";
    default:
      return "ref";
  }
}

std::string describe(const wasm_functype_t* type) {
  auto list = [](const wasm_valtype_vec_t* v) {
    std::string out;
    for (std::size_t i = 0; i < v->size; ++i) {
      if (i) out += ", ";
      out += kind_name(wasm_valtype_kind(v->data[i]));
    }
    return out;
  };
  const wasm_valtype_vec_t* results = wasm_functype_results(type);
  std::string out = "(" + list(wasm_functype_params(type)) + ") -> ";
  out += results->size == 0 ? "()" : results->size == 1 ? list(results) : "(" + list(results) + ")";
  return out;
}

bool matches(const wasm_functype_t* type, Signature s) {
  const wasm_valtype_vec_t* params = wasm_functype_params(type);
  const wasm_valtype_vec_t* results = wasm_functype_results(type);
  if (params->size != s.params || results->size != s.results) return false;
  for (std::size_t i = 0; i < params->size; ++i)
    if (wasm_valtype_kind(params->data[i]) != WASM_I32) return false;
  for (std::size_t i = 0; i < results->size; ++i)
    if (wasm_valtype_kind(results->data[i]) != WASM_I32) return false;
  return true;
}

std::string_view extern_kind_name(wasm_externkind_t kind) {
  switch (kind) {
    case WASM_EXTERN_FUNC:
      return "a function";
    case WASM_EXTERN_GLOBAL:
      return "a global";
    case WASM_EXTERN_TABLE:
      return "a table";
    case WASM_EXTERN_MEMORY:
      return "a memory";
    default:
      return "something else";
  }
}

struct ExportedFunc {
  const char* name;
  Signature signature;
};
constexpr ExportedFunc v2_functions[] = {
    {"stateroom_malloc", {1, 1}}, {"stateroom_free", {2, 0}}, {"stateroom_recv", {2, 0}}};
constexpr const char* v2_globals[] = {"STATEROOM_API_VERSION", "STATEROOM_API_PROTOCOL"};
constexpr ExportedFunc v1_functions[] = {{"jam_malloc", {1, 1}}, {"jam_free", {2, 0}},   {"initialize", {2, 0}},
                                         {"connect", {1, 0}},    {"disconnect", {1, 0}}, {"timer", {0, 0}},
                                         {"message", {3, 0}},    {"binary", {3, 0}}};
constexpr const char* v1_globals[] = {"JAMSOCKET_API_VERSION", "JAMSOCKET_API_PROTOCOL"};

struct ImportedFunc {
  const char* name;
  Signature signature;
  wasmtime_func_unchecked_callback_t callback;  ///< raw values: no type check per call
};

/// The module's exports by name, with their types (owned by `vec`).
class Exports {
 public:
  explicit Exports(const wasmtime_module_t* module) {
    wasmtime_module_exports(module, &vec_);
    for (std::size_t i = 0; i < vec_.size; ++i)
      by_name_.emplace_back(detail::view(wasm_exporttype_name(vec_.data[i])), wasm_exporttype_type(vec_.data[i]));
  }
  ~Exports() { wasm_exporttype_vec_delete(&vec_); }
  Exports(const Exports&) = delete;
  Exports& operator=(const Exports&) = delete;

  const wasm_externtype_t* find(std::string_view name) const {
    for (const auto& [n, type] : by_name_)
      if (n == name) return type;
    return nullptr;
  }

 private:
  wasm_exporttype_vec_t vec_{};
  std::vector<std::pair<std::string_view, const wasm_externtype_t*>> by_name_;
};

/// Checks the exports against the interface; returns the generation the module speaks.
Abi check_exports(const Exports& exports, const std::string& name) {
  const bool v2 = exports.find("stateroom_recv") != nullptr;
  const bool v1 = exports.find("initialize") != nullptr && exports.find("jam_malloc") != nullptr;
  if (!v2 && !v1)
    throw LoadError(fmt::format(
        "{}: not a Stateroom service module: it exports neither `stateroom_recv` (interface v2) nor "
        "`initialize` and `jam_malloc` (interface v1)",
        name));
  const Abi abi = v2 ? Abi::v2 : Abi::v1;
  const char* generation = v2 ? "v2" : "v1";

  const wasm_externtype_t* memory = exports.find("memory");
  if (!memory)
    throw LoadError(fmt::format("{}: missing export `memory` (interface {} needs the linear memory exported)",
                                name, generation));
  if (wasm_externtype_kind(memory) != WASM_EXTERN_MEMORY)
    throw LoadError(fmt::format("{}: export `memory` is {}, expected a memory", name,
                                extern_kind_name(wasm_externtype_kind(memory))));
  if (wasmtime_memorytype_is64(wasm_externtype_as_memorytype_const(memory)))
    throw LoadError(fmt::format("{}: export `memory` is a 64-bit memory; the interface needs a 32-bit one", name));

  for (const auto& f : v2 ? std::span<const ExportedFunc>(v2_functions) : std::span<const ExportedFunc>(v1_functions)) {
    const wasm_externtype_t* type = exports.find(f.name);
    if (!type)
      throw LoadError(fmt::format("{}: missing export `{}`, a function {} (interface {})", name, f.name,
                                  describe(f.signature), generation));
    if (wasm_externtype_kind(type) != WASM_EXTERN_FUNC)
      throw LoadError(fmt::format("{}: export `{}` is {}, expected a function {}", name, f.name,
                                  extern_kind_name(wasm_externtype_kind(type)), describe(f.signature)));
    const wasm_functype_t* func = wasm_externtype_as_functype_const(type);
    if (!matches(func, f.signature))
      throw LoadError(fmt::format("{}: export `{}` has type {}, expected {}", name, f.name, describe(func),
                                  describe(f.signature)));
  }
  for (const char* g : v2 ? std::span<const char* const>(v2_globals) : std::span<const char* const>(v1_globals)) {
    const wasm_externtype_t* type = exports.find(g);
    if (!type)
      throw LoadError(fmt::format("{}: missing export `{}`, an i32 global holding the address of the value", name, g));
    if (wasm_externtype_kind(type) != WASM_EXTERN_GLOBAL)
      throw LoadError(fmt::format("{}: export `{}` is {}, expected an i32 global", name, g,
                                  extern_kind_name(wasm_externtype_kind(type))));
    const wasm_globaltype_t* global = wasm_externtype_as_globaltype_const(type);
    if (wasm_valtype_kind(wasm_globaltype_content(global)) != WASM_I32 ||
        wasm_globaltype_mutability(global) != WASM_CONST)
      throw LoadError(fmt::format("{}: export `{}` must be an immutable i32 global", name, g));
  }
  if (const wasm_externtype_t* init = exports.find("_initialize")) {
    if (wasm_externtype_kind(init) != WASM_EXTERN_FUNC || !matches(wasm_externtype_as_functype_const(init), {0, 0}))
      throw LoadError(fmt::format("{}: export `_initialize` must be a function () -> ()", name));
  }
  return abi;
}

std::span<const ImportedFunc> env_imports(Abi abi) {
  static const ImportedFunc v2[] = {{"stateroom_send", {2, 0}, &InterfaceV2::on_send}};
  static const ImportedFunc v1[] = {{"send_message", {3, 0}, &InterfaceV1::on_send<PayloadKind::text>},
                                    {"send_binary", {3, 0}, &InterfaceV1::on_send<PayloadKind::binary>},
                                    {"set_timer", {1, 0}, &InterfaceV1::on_set_timer}};
  if (abi == Abi::v2) return v2;
  return v1;
}

/// Checks that every import is one the host provides for `abi` (WASI is checked by the linker).
void check_imports(const wasmtime_module_t* module, Abi abi, const std::string& name) {
  wasm_importtype_vec_t imports;
  wasmtime_module_imports(module, &imports);
  std::string problem;
  const auto env = env_imports(abi);
  for (std::size_t i = 0; i < imports.size && problem.empty(); ++i) {
    const std::string_view from = detail::view(wasm_importtype_module(imports.data[i]));
    const std::string_view what = detail::view(wasm_importtype_name(imports.data[i]));
    const wasm_externtype_t* type = wasm_importtype_type(imports.data[i]);
    if (from == wasi_module) continue;
    const ImportedFunc* known = nullptr;
    if (from == "env")
      for (const auto& f : env)
        if (what == f.name) known = &f;
    if (!known) {
      std::string offered;
      for (const auto& f : env) offered += fmt::format("{}env.{}", offered.empty() ? "" : ", ", f.name);
      problem = fmt::format("unknown import `{}.{}`: a module speaking interface {} may import only {} and WASI "
                            "preview 1 ({}.*)",
                            from, what, abi == Abi::v2 ? "v2" : "v1", offered, wasi_module);
    } else if (wasm_externtype_kind(type) != WASM_EXTERN_FUNC) {
      problem = fmt::format("import `env.{}` is {}, expected a function {}", what,
                            extern_kind_name(wasm_externtype_kind(type)), describe(known->signature));
    } else if (!matches(wasm_externtype_as_functype_const(type), known->signature)) {
      problem = fmt::format("import `env.{}` has type {}, expected {}", what,
                            describe(wasm_externtype_as_functype_const(type)), describe(known->signature));
    }
  }
  wasm_importtype_vec_delete(&imports);
  if (!problem.empty()) throw LoadError(fmt::format("{}: {}", name, problem));
}

detail::FuncTypeHandle make_functype(Signature s) {
  wasm_valtype_vec_t params, results;
  wasm_valtype_vec_new_uninitialized(&params, s.params);
  for (std::size_t i = 0; i < s.params; ++i) params.data[i] = wasm_valtype_new(WASM_I32);
  wasm_valtype_vec_new_uninitialized(&results, s.results);
  for (std::size_t i = 0; i < s.results; ++i) results.data[i] = wasm_valtype_new(WASM_I32);
  return detail::FuncTypeHandle(wasm_functype_new(&params, &results));
}

/// WebAssembly text starts (after blanks and comments) with `(`; binary starts with `\0asm`.
bool looks_like_text(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (c == '(') return true;
    if (c == ';' && i + 1 < bytes.size() && bytes[i + 1] == ';') {
      while (i < bytes.size() && bytes[i] != '\n') ++i;
      continue;
    }
    return false;
  }
  return false;
}

// --- the compiled-code cache ---------------------------------------------------------------------

constexpr std::string_view cache_magic = "stateroom compiled module v1\n";

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string cache_header(std::string_view wasm) {
  return fmt::format("{}{:016x} {}\n", cache_magic, fnv1a(wasm), wasm.size());
}

std::optional<std::string> read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The cached compilation of `wasm`, if `cache` holds one this engine accepts.
detail::ModuleHandle load_cached(wasm_engine_t* engine, const std::filesystem::path& cache, std::string_view wasm) {
  auto bytes = read_file(cache);
  const std::string header = cache_header(wasm);
  if (!bytes || !bytes->starts_with(header)) return nullptr;
  wasmtime_module_t* module = nullptr;
  const auto* code = reinterpret_cast<const std::uint8_t*>(bytes->data() + header.size());
  if (wasmtime_error_t* error = wasmtime_module_deserialize(engine, code, bytes->size() - header.size(), &module)) {
    spdlog::info("{}: compiled-module cache is stale ({}); recompiling", cache.string(), detail::take_message(error));
    return nullptr;
  }
  return detail::ModuleHandle(module);
}

void store_cached(const wasmtime_module_t* module, const std::filesystem::path& cache, std::string_view wasm) {
  wasm_byte_vec_t code;
  if (wasmtime_error_t* error = wasmtime_module_serialize(module, &code)) {
    spdlog::warn("{}: cannot serialize the compiled module: {}", cache.string(), detail::take_message(error));
    return;
  }
  const std::string serialized = detail::take(code);
  auto temp = cache;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << cache_header(wasm) << serialized;
    if (!out) {
      spdlog::warn("{}: cannot write the compiled-module cache: {}", cache.string(), std::strerror(errno));
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, cache, ec);
  if (ec) spdlog::warn("{}: cannot write the compiled-module cache: {}", cache.string(), ec.message());
}

/// Starts an instance of `module` for loading, to its version check; the reason when it fails.
template <class Guest>
std::optional<std::string> probe(std::shared_ptr<const Module::Impl> module) {
  Guest guest(std::move(module), "");
  return guest.probe();
}

/// A room's instance of `module`, as `Guest` (of the interface it speaks). Null (the room failed)
/// when it cannot start.
template <class Guest>
std::unique_ptr<Service> start(std::shared_ptr<const Module::Impl> module, std::string room_id, Context& ctx) {
  auto guest = std::make_unique<Guest>(std::move(module), std::move(room_id));
  if (auto error = guest->start()) {
    if (guest->unavailable()) {
      ctx.unavailable(*error);
    } else {
      ctx.fail(*error);
    }
    return nullptr;
  }
  return guest;
}

}  // namespace

Module::Module(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Module::~Module() = default;

Abi Module::abi() const noexcept { return impl_->abi; }
const std::string& Module::name() const noexcept { return impl_->name; }

std::shared_ptr<Module> Module::load(std::shared_ptr<Engine> engine, const std::filesystem::path& file,
                                     const LoadOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw LoadError(fmt::format("{}: is a directory, not a WebAssembly module", file.string()));
  errno = 0;
  auto bytes = read_file(file);
  if (!bytes)
    throw LoadError(fmt::format("{}: cannot read it: {}", file.string(),
                                errno ? std::strerror(errno) : "cannot open the file"));
  auto impl = std::make_shared<Impl>();
  impl->engine = std::move(engine);
  impl->name = file.string();
  return load_impl(std::move(impl), *bytes, options.cache_compiled ? std::optional(file) : std::nullopt);
}

std::shared_ptr<Module> Module::load_bytes(std::shared_ptr<Engine> engine, std::string_view bytes,
                                           std::string name) {
  auto impl = std::make_shared<Impl>();
  impl->engine = std::move(engine);
  impl->name = std::move(name);
  return load_impl(std::move(impl), bytes, std::nullopt);
}

std::shared_ptr<Module> Module::load_impl(std::shared_ptr<Impl> impl, std::string_view bytes,
                                          const std::optional<std::filesystem::path>& cache_for) {
  const std::string& name = impl->name;
  if (!impl->engine) throw LoadError(fmt::format("{}: no engine to load it into", name));
  wasm_engine_t* engine = impl->runtime().engine.get();

  // Text or binary.
  std::string text_compiled;
  std::string_view wasm = bytes;
  if (bytes.empty()) throw LoadError(fmt::format("{}: the file is empty, not a WebAssembly module", name));
  if (!bytes.starts_with(wasm_magic)) {
    if (!looks_like_text(bytes))
      throw LoadError(fmt::format("{}: not a WebAssembly module (a binary module starts with \\0asm; a text module "
                                  "with `(module`)",
                                  name));
    wasm_byte_vec_t out;
    if (wasmtime_error_t* error = wasmtime_wat2wasm(bytes.data(), bytes.size(), &out))
      throw LoadError(fmt::format("{}: invalid WebAssembly text: {}", name, detail::take_message(error)));
    text_compiled = detail::take(out);
    wasm = text_compiled;
  }

  // Every mutable global exported too, for snapshots (the module's identity is its own bytes').
  impl->hash = ::stateroom::detail::sha256_hex(wasm);
  impl->layout = data_layout_hash(wasm);
  std::string rewritten;
  wasm = export_globals(wasm, rewritten, *impl);
  if (!impl->not_persistent.empty())
    spdlog::debug("{}: its rooms cannot be kept in snapshots: {}", name, impl->not_persistent);

  // Compile (or reuse the cached compilation).
  std::filesystem::path cache;
  if (cache_for) {
    cache = *cache_for;
    cache += ".cwasm";
    impl->module = load_cached(engine, cache, wasm);
  }
  if (!impl->module) {
    wasmtime_module_t* module = nullptr;
    if (wasmtime_error_t* error =
            wasmtime_module_new(engine, reinterpret_cast<const std::uint8_t*>(wasm.data()), wasm.size(), &module))
      throw LoadError(fmt::format("{}: invalid WebAssembly module: {}", name, detail::take_message(error)));
    impl->module.reset(module);
    if (cache_for) store_cached(module, cache, wasm);
  }

  // The interface.
  {
    Exports exports(impl->module.get());
    impl->abi = check_exports(exports, name);
    impl->has_initialize = exports.find("_initialize") != nullptr;
  }
  check_imports(impl->module.get(), impl->abi, name);

  // Link once: WASI and our imports; every room then instantiates the pre-linked module.
  impl->linker.reset(wasmtime_linker_new(engine));
  if (wasmtime_error_t* error = wasmtime_linker_define_wasi(impl->linker.get()))
    throw LoadError(fmt::format("{}: cannot provide WASI: {}", name, detail::take_message(error)));
  for (const auto& f : env_imports(impl->abi)) {
    auto type = make_functype(f.signature);
    if (wasmtime_error_t* error = wasmtime_linker_define_func_unchecked(impl->linker.get(), "env", 3, f.name,
                                                              std::strlen(f.name), type.get(), f.callback,
                                                              nullptr, nullptr))
      throw LoadError(fmt::format("{}: cannot provide env.{}: {}", name, f.name, detail::take_message(error)));
  }
  wasmtime_instance_pre_t* pre = nullptr;
  if (wasmtime_error_t* error = wasmtime_linker_instantiate_pre(impl->linker.get(), impl->module.get(), &pre))
    throw LoadError(fmt::format("{}: {}", name, detail::take_message(error)));
  impl->pre.reset(pre);

  if (impl->abi == Abi::v2) impl->batcher = detail::compile_batcher(engine);

  // Instantiate once to check what only an instance shows: its start-up and version globals.
  std::shared_ptr<const Impl> shared = std::move(impl);
  if (auto error = shared->abi == Abi::v2 ? probe<GuestV2>(shared) : probe<GuestV1>(shared))
    throw LoadError(fmt::format("{}: {}", name, *error));
  spdlog::debug("{}: loaded (module interface {})", name, shared->abi == Abi::v2 ? "v2" : "v1");
  return std::shared_ptr<Module>(new Module(std::move(shared)));
}

std::string Module::snapshot_identity() const { return "wasm-sha256:" + impl_->hash; }

std::string Module::snapshot_layout() const {
  return impl_->layout.empty() ? std::string() : "wasm-layout-sha256:" + impl_->layout;
}

const std::string& Module::persistence_problem() const noexcept { return impl_->not_persistent; }

std::optional<std::string> Module::snapshot_misfit(std::span<const std::byte> head) const {
  const auto size = detail::snapshot_memory_size(head);
  if (!size) return std::nullopt;
  const Limits& limits = impl_->runtime().limits;
  if (*size > limits.memory_bytes)
    return fmt::format("its memory of {} is more than the {} a room may have (--memory-limit)",
                       ::stateroom::detail::format_bytes(*size), ::stateroom::detail::format_bytes(limits.memory_bytes));
  if (*size > limits.total_memory_bytes)
    return fmt::format("its memory of {} is more than the {} all rooms may have together (--total-memory-limit)",
                       ::stateroom::detail::format_bytes(*size),
                       ::stateroom::detail::format_bytes(limits.total_memory_bytes));
  return std::nullopt;
}

std::unique_ptr<Service> Module::create(std::string_view room_id, Context& ctx) {
  // The interface is chosen here, once per room.
  if (impl_->abi == Abi::v2) return start<GuestV2>(impl_, std::string(room_id), ctx);
  return start<GuestV1>(impl_, std::string(room_id), ctx);
}

}  // namespace stateroom::wasm
