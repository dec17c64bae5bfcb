# The Wasmtime C API, as the imported target `stateroom::wasmtime`.
#
# Either a prebuilt C API (-DSTATEROOM_WASMTIME_ROOT=<dir> holding include/ and lib/), or built from
# the crates.io crate `wasmtime-c-api-impl` through our wrapper crate in third_party/wasmtime with
# `cargo build --release --locked`. Cargo's target directory lives in a cache outside the build tree
# (STATEROOM_CACHE_DIR, default ~/.cache/stateroom), so a fresh clone on the same machine reuses it.
set(STATEROOM_WASMTIME_ROOT "" CACHE PATH "A prebuilt Wasmtime C API (include/ and lib/); empty builds it with cargo")

add_library(stateroom_wasmtime STATIC IMPORTED GLOBAL)
add_library(stateroom::wasmtime ALIAS stateroom_wasmtime)

if(STATEROOM_WASMTIME_ROOT)
  find_library(STATEROOM_WASMTIME_LIBRARY NAMES libwasmtime.a wasmtime PATHS ${STATEROOM_WASMTIME_ROOT}/lib
    NO_DEFAULT_PATH REQUIRED)
  set(wasmtime_include ${STATEROOM_WASMTIME_ROOT}/include)
  if(NOT EXISTS ${wasmtime_include}/wasmtime.hh)
    message(FATAL_ERROR "STATEROOM_WASMTIME_ROOT=${STATEROOM_WASMTIME_ROOT} has no include/wasmtime.hh")
  endif()
  set_target_properties(stateroom_wasmtime PROPERTIES IMPORTED_LOCATION ${STATEROOM_WASMTIME_LIBRARY})
else()
  find_program(CARGO cargo HINTS $ENV{HOME}/.cargo/bin REQUIRED)
  if(DEFINED ENV{STATEROOM_CACHE_DIR})
    set(cache_dir $ENV{STATEROOM_CACHE_DIR})
  elseif(DEFINED ENV{XDG_CACHE_HOME})
    set(cache_dir $ENV{XDG_CACHE_HOME}/stateroom)
  else()
    set(cache_dir $ENV{HOME}/.cache/stateroom)
  endif()
  set(crate_dir ${PROJECT_SOURCE_DIR}/third_party/wasmtime)
  set(target_dir ${cache_dir}/wasmtime-target)
  set(wasmtime_include ${cache_dir}/wasmtime-include)
  set(wasmtime_library ${target_dir}/release/libstateroom_wasmtime.a)
  file(MAKE_DIRECTORY ${wasmtime_include})
  # Every source of the wrapper crate (cargo itself tracks them; this makes the build ask it).
  file(GLOB crate_sources CONFIGURE_DEPENDS ${crate_dir}/src/*.rs)
  add_custom_command(
    OUTPUT ${wasmtime_library} ${wasmtime_include}/wasmtime.hh
    COMMAND ${CMAKE_COMMAND} -E env CARGO_TARGET_DIR=${target_dir} STATEROOM_WASMTIME_INCLUDE_OUT=${wasmtime_include}
            ${CARGO} build --release --locked --manifest-path ${crate_dir}/Cargo.toml
    DEPENDS ${crate_dir}/Cargo.toml ${crate_dir}/Cargo.lock ${crate_dir}/build.rs ${crate_sources}
    COMMENT "Building the Wasmtime C API with cargo (release; cached in ${target_dir})"
    USES_TERMINAL)
  add_custom_target(stateroom_wasmtime_build DEPENDS ${wasmtime_library} ${wasmtime_include}/wasmtime.hh)
  add_dependencies(stateroom_wasmtime stateroom_wasmtime_build)
  set_target_properties(stateroom_wasmtime PROPERTIES IMPORTED_LOCATION ${wasmtime_library}
    # The wrapper crate adds stateroom_store_limits_trapping (memory growth past the cap traps).
    INTERFACE_COMPILE_DEFINITIONS STATEROOM_WASMTIME_WRAPPER=1)
endif()

set_target_properties(stateroom_wasmtime PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES ${wasmtime_include}
  INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
