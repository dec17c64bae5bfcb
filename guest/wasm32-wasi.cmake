# CMake toolchain file: C and C++ for wasm32-wasi (WASI preview 1) with clang and wasm-ld.
#
#   cmake -S <project> -B <build> -DCMAKE_TOOLCHAIN_FILE=<stateroom>/guest/wasm32-wasi.cmake
#
# It uses the compiler's own default sysroot. On Debian/Ubuntu that is the distribution's wasi-libc
# (/usr/include/wasm32-wasi, /usr/lib/wasm32-wasi) with libc++ for wasm32 beside it: do NOT point
# --sysroot at /usr/share/wasi-sysroot there, which breaks the C++ headers. With wasi-sdk or another
# self-contained sysroot, pass -DWASI_SYSROOT=<dir> (or use wasi-sdk's clang, which knows its own).
#
# Options (cache variables or environment):
#   WASI_CLANG, WASI_CLANGXX  the compilers to use (default: clang/clang++, else clang-14..19)
#   WASI_SYSROOT              an explicit --sysroot (default: none)
#
# Debian packages it needs (match the clang version):
#   clang lld wasi-libc libc++-14-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-14-dev-wasm32

# CMake 3.25 knows no "WASI" platform; "Generic" is a platform without an OS, which is what CMake
# needs to know (static linking only, no shared libraries, no install RPATHs).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_VERSION 1)
set(CMAKE_SYSTEM_PROCESSOR wasm32)
set(STATEROOM_WASI_TARGET wasm32-wasi)

# Variables the try_compile projects that CMake runs while checking the compilers need too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES WASI_CLANG WASI_CLANGXX WASI_SYSROOT)

set(_stateroom_wasi_packages
    "clang lld wasi-libc libc++-14-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-14-dev-wasm32")

foreach(_var WASI_CLANG WASI_CLANGXX WASI_SYSROOT)
  if(NOT DEFINED ${_var} AND DEFINED ENV{${_var}})
    set(${_var} "$ENV{${_var}}")
  endif()
endforeach()

# The compilers: unversioned first, then the versions Debian and Ubuntu ship.
set(_stateroom_clang_versions 14 15 16 17 18 19)
set(_stateroom_clangxx_names clang++)
set(_stateroom_clang_names clang)
foreach(_v IN LISTS _stateroom_clang_versions)
  list(APPEND _stateroom_clangxx_names clang++-${_v})
  list(APPEND _stateroom_clang_names clang-${_v})
endforeach()
if(NOT WASI_CLANGXX)
  find_program(WASI_CLANGXX NAMES ${_stateroom_clangxx_names})
endif()
if(NOT WASI_CLANGXX)
  message(FATAL_ERROR
    "wasm32-wasi toolchain: no clang++ found (looked for ${_stateroom_clangxx_names}). "
    "On Debian/Ubuntu: apt-get install ${_stateroom_wasi_packages}")
endif()
if(NOT WASI_CLANG)
  # Prefer the C compiler that sits beside the chosen clang++ (same version).
  get_filename_component(_dir "${WASI_CLANGXX}" DIRECTORY)
  get_filename_component(_name "${WASI_CLANGXX}" NAME)
  string(REPLACE "clang++" "clang" _cname "${_name}")
  if(EXISTS "${_dir}/${_cname}")
    set(WASI_CLANG "${_dir}/${_cname}" CACHE FILEPATH "C compiler for wasm32-wasi")
  else()
    find_program(WASI_CLANG NAMES ${_stateroom_clang_names})
  endif()
endif()

set(CMAKE_C_COMPILER "${WASI_CLANG}")
set(CMAKE_CXX_COMPILER "${WASI_CLANGXX}")
set(CMAKE_C_COMPILER_TARGET ${STATEROOM_WASI_TARGET})
set(CMAKE_CXX_COMPILER_TARGET ${STATEROOM_WASI_TARGET})
set(CMAKE_ASM_COMPILER_TARGET ${STATEROOM_WASI_TARGET})
if(WASI_SYSROOT)
  set(CMAKE_SYSROOT "${WASI_SYSROOT}")
endif()

# Check once, with a message that says what to install, that clang can really build for wasm32-wasi:
# the linker (wasm-ld, from lld), wasi-libc, libc++/libc++abi and the compiler-rt builtins.
if(NOT _STATEROOM_WASI_CHECKED)
  set(_sysroot_flag)
  if(WASI_SYSROOT)
    set(_sysroot_flag "--sysroot=${WASI_SYSROOT}")
  endif()
  set(_missing)
  foreach(_file libc.a libc++.a libc++abi.a crt1-reactor.o)
    execute_process(
      COMMAND "${WASI_CLANGXX}" --target=${STATEROOM_WASI_TARGET} ${_sysroot_flag} -print-file-name=${_file}
      OUTPUT_VARIABLE _path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(NOT IS_ABSOLUTE "${_path}" OR NOT EXISTS "${_path}")
      list(APPEND _missing ${_file})
    endif()
  endforeach()
  execute_process(
    COMMAND "${WASI_CLANGXX}" --target=${STATEROOM_WASI_TARGET} ${_sysroot_flag} -print-libgcc-file-name
    OUTPUT_VARIABLE _path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT EXISTS "${_path}")
    list(APPEND _missing "compiler-rt builtins (${_path})")
  endif()
  execute_process(
    COMMAND "${WASI_CLANGXX}" --target=${STATEROOM_WASI_TARGET} ${_sysroot_flag} -print-prog-name=wasm-ld
    OUTPUT_VARIABLE _path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT IS_ABSOLUTE "${_path}")
    find_program(_stateroom_wasm_ld NAMES "${_path}" wasm-ld NO_CACHE)
    set(_path "${_stateroom_wasm_ld}")
  endif()
  if(NOT _path OR NOT EXISTS "${_path}")
    list(APPEND _missing "wasm-ld (lld)")
  endif()
  if(_missing)
    list(JOIN _missing ", " _missing)
    # Name the packages of the clang that was found (Debian versions them: libc++-15-dev-wasm32 ...).
    execute_process(COMMAND "${WASI_CLANGXX}" --version OUTPUT_VARIABLE _version ERROR_QUIET)
    if(_version MATCHES "clang version ([0-9]+)\\.")
      string(REPLACE "-14-" "-${CMAKE_MATCH_1}-" _stateroom_wasi_packages "${_stateroom_wasi_packages}")
    endif()
    message(FATAL_ERROR
      "wasm32-wasi toolchain: ${WASI_CLANGXX} cannot build for ${STATEROOM_WASI_TARGET}; missing: ${_missing}. "
      "On Debian/Ubuntu: apt-get install ${_stateroom_wasi_packages} "
      "(with the version numbers of your clang).")
  endif()
  set(_STATEROOM_WASI_CHECKED TRUE)
endif()

# Executables are modules: <name>.wasm. (CMakeGenericSystem.cmake resets CMAKE_EXECUTABLE_SUFFIX
# after the toolchain file is read; the per-language variables take precedence over it.)
set(CMAKE_EXECUTABLE_SUFFIX .wasm)
set(CMAKE_EXECUTABLE_SUFFIX_C .wasm)
set(CMAKE_EXECUTABLE_SUFFIX_CXX .wasm)

# Never pick up the host's libraries, headers or packages; programs (build tools) come from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
