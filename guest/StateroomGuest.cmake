# Building Stateroom services as WebAssembly modules (the guest SDK's CMake side).
#
# In a project configured with the wasm32-wasi toolchain file:
#
#   cmake -S . -B build-wasm -DCMAKE_TOOLCHAIN_FILE=<stateroom>/guest/wasm32-wasi.cmake
#
#   # CMakeLists.txt
#   cmake_minimum_required(VERSION 3.25)
#   project(my_service LANGUAGES CXX)
#   include(<stateroom>/guest/StateroomGuest.cmake)
#   stateroom_add_wasm_service(my_service service.cpp)     # -> my_service.wasm
#
# stateroom_add_wasm_service(<target> <source>...)
#   Adds the executable <target> that links to the module <target>.wasm (in the target's runtime
#   output directory, CMAKE_RUNTIME_OUTPUT_DIRECTORY if set). One of the sources must end with
#   STATEROOM_SERVICE(T) (or STATEROOM_WASM(T)); without it the link fails with "symbol not
#   found: STATEROOM_API_VERSION". Add more sources, include directories, definitions or options with
#   the usual target_* commands; later options win, so e.g. target_compile_options(<target> PRIVATE
#   -Os) overrides the default -O2.
#
# Variables:
#   STATEROOM_INCLUDE_DIR  the directory holding stateroom/service.hpp, guest.hpp and codec.hpp.
#                          Defaults to ../include beside this file (the source tree layout); set it
#                          (e.g. -DSTATEROOM_INCLUDE_DIR=/usr/include) before the include() when
#                          the headers are elsewhere.
#   STATEROOM_GUEST_COMPILE_OPTIONS, STATEROOM_GUEST_LINK_OPTIONS
#                          the flags the function adds (read-only; documented here for reference).
include_guard(GLOBAL)

if(NOT DEFINED STATEROOM_INCLUDE_DIR)
  get_filename_component(_stateroom_guest_default_include "${CMAKE_CURRENT_LIST_DIR}/../include" ABSOLUTE)
  set(STATEROOM_INCLUDE_DIR "${_stateroom_guest_default_include}" CACHE PATH
      "Directory holding the Stateroom headers (stateroom/service.hpp, stateroom/guest.hpp)")
endif()
if(NOT EXISTS "${STATEROOM_INCLUDE_DIR}/stateroom/guest.hpp")
  message(FATAL_ERROR
    "StateroomGuest: ${STATEROOM_INCLUDE_DIR}/stateroom/guest.hpp not found; set STATEROOM_INCLUDE_DIR "
    "to the directory that holds stateroom/guest.hpp")
endif()

# Exceptions and RTTI are not available for wasm32 with clang's libc++ here (and the service
# interface needs neither); -O2 keeps modules small and fast.
set(STATEROOM_GUEST_COMPILE_OPTIONS -fno-exceptions -fno-rtti -O2)
# A reactor module (exports _initialize, which runs static constructors; no main), the interface
# version data symbols exported as globals, and no debug info (the name section stays, so traps
# still show function names).
set(STATEROOM_GUEST_LINK_OPTIONS
    -mexec-model=reactor
    -fno-exceptions
    -Wl,--export=STATEROOM_API_VERSION
    -Wl,--export=STATEROOM_API_PROTOCOL
    -Wl,--strip-debug)

function(stateroom_add_wasm_service target)
  if(NOT ARGN)
    message(FATAL_ERROR "stateroom_add_wasm_service(${target}): no sources given")
  endif()
  if(NOT CMAKE_SYSTEM_PROCESSOR STREQUAL "wasm32" OR NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR
      "stateroom_add_wasm_service(${target}): this project is not being compiled for wasm32 with clang "
      "(processor '${CMAKE_SYSTEM_PROCESSOR}', compiler '${CMAKE_CXX_COMPILER_ID}'). Configure it with "
      "-DCMAKE_TOOLCHAIN_FILE=${CMAKE_CURRENT_FUNCTION_LIST_DIR}/wasm32-wasi.cmake")
  endif()
  add_executable(${target} ${ARGN})
  target_include_directories(${target} PRIVATE "${STATEROOM_INCLUDE_DIR}")
  target_compile_features(${target} PRIVATE cxx_std_20)
  target_compile_options(${target} PRIVATE ${STATEROOM_GUEST_COMPILE_OPTIONS})
  target_link_options(${target} PRIVATE ${STATEROOM_GUEST_LINK_OPTIONS})
  # <target>.wasm whatever the platform's executable suffix.
  set_target_properties(${target} PROPERTIES SUFFIX ".wasm" CXX_EXTENSIONS OFF)
endfunction()
