# mcompress_add_library(<module> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# creates the static library mcompress_<module>, its alias mcompress::<module>, and its
# include interface <module>/include.
function(mcompress_add_library module)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target mcompress_${module})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(mcompress::${module} ALIAS ${target})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  # Installed as mcompress::<module> (the alias above is the same name inside this build), so
  # a consumer writes the same target_link_libraries line either way.
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON EXPORT_NAME ${module})
  # Compiled in batches of eight files (a unity build): each translation unit loads the 570 MB
  # precompiled <torch/torch.h> (mcompress_use_torch_pch), which took most of a small file's
  # compile time. So a helper in one file's anonymous namespace must not share its name with
  # another file's of the module: a shared one belongs in a header, once.
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
  mcompress_set_warnings(${target})
  # One export set per module, so that the package can load the components a consumer asks for
  # and find only their dependencies (mcompressConfig.cmake.in).
  install(TARGETS ${target} EXPORT mcompress-${module}-targets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  set_property(GLOBAL APPEND PROPERTY MCOMPRESS_MODULES ${module})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

function(mcompress_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(MCOMPRESS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Every translation unit that includes <torch/torch.h> costs ~15 s on two cores; a precompiled
# header brings each of them down to a couple of seconds. One header is compiled for the whole
# build and reused by every target: each compile of it costs ~22 s of CPU and writes 570 MB, and
# a per-target header made 16 of them. Reuse needs the same flags (GCC and clang check -fPIC,
# the sanitizers, the language options), so the owner target is compiled like our libraries;
# macros our targets define (MCOMPRESS_*) do not occur in LibTorch's headers.
function(mcompress_use_torch_pch target)
  if(NOT TARGET mcompress_torch_pch)
    add_library(mcompress_torch_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp)
    target_link_libraries(mcompress_torch_pch PRIVATE ${TORCH_LIBRARIES})
    target_include_directories(mcompress_torch_pch PRIVATE ${TORCH_INCLUDE_DIRS})
    set_target_properties(mcompress_torch_pch PROPERTIES POSITION_INDEPENDENT_CODE ON)
    mcompress_set_warnings(mcompress_torch_pch)
    target_precompile_headers(mcompress_torch_pch PRIVATE <torch/torch.h>)
  endif()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    # Not POSITION_INDEPENDENT_CODE, which compiles executables with -fPIE, and not the
    # compilers' default (also PIE on Debian): -fPIC objects link into a PIE all the same.
    target_compile_options(${target} PRIVATE -fPIC)
  else()
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  target_precompile_headers(${target} REUSE_FROM mcompress_torch_pch)
endfunction()

# MCOMPRESS_SANITIZE: AddressSanitizer + UndefinedBehaviorSanitizer on every target defined
# after this call (compile and link). UBSan findings abort (-fno-sanitize-recover) so a test
# that triggers one fails; tests/sanitizers/ holds the runtime options and suppressions.
# MCOMPRESS_FUZZ (clang only): our libraries get -fsanitize=fuzzer-no-link,address (coverage
# counters + ASan, no libFuzzer main); fuzz/ links its executables with -fsanitize=fuzzer.
# Both together (clang): one build folder whose libraries serve the unit tests under
# ASan+UBSan and the fuzz targets alike (scripts/reliability-ci.sh, the CI subset); the
# coverage counters cost the tests little, and the sanitizer runtime supplies their callbacks.
function(mcompress_configure_sanitizers)
  if(MCOMPRESS_SANITIZE AND MCOMPRESS_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MCOMPRESS_SANITIZE with MCOMPRESS_FUZZ needs clang")
  endif()
  if(MCOMPRESS_SANITIZE)
    set(flags -fsanitize=address,undefined -fno-sanitize-recover=undefined
              -fno-omit-frame-pointer)
    add_compile_options(${flags})
    add_link_options(${flags})
  endif()
  if(MCOMPRESS_FUZZ)
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "MCOMPRESS_FUZZ needs clang (libFuzzer): "
                          "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
    endif()
    add_compile_options(-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer)
    add_link_options(-fsanitize=address)
  endif()
endfunction()

# Compiles the sanitizers' default runtime options (tests/sanitizers/) into an executable of a
# sanitizer or fuzz build; no-op otherwise.
function(mcompress_add_sanitizer_options target)
  if(MCOMPRESS_SANITIZE OR MCOMPRESS_FUZZ)
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/sanitizers/sanitizer_options.cpp)
    target_compile_definitions(${target} PRIVATE
      MCOMPRESS_SANITIZER_DIR="${PROJECT_SOURCE_DIR}/tests/sanitizers")
  endif()
endfunction()

# `cmake --install` puts the libraries, their headers and a CMake package here, so that another
# project does find_package(mcompress) and links mcompress::quant etc. (examples/). The
# libraries are static: the package config finds the same dependencies this build used.
function(mcompress_install_package)
  include(CMakePackageConfigHelpers)
  set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/mcompress)
  get_property(modules GLOBAL PROPERTY MCOMPRESS_MODULES)
  foreach(module IN LISTS modules)
    install(EXPORT mcompress-${module}-targets NAMESPACE mcompress::
            FILE mcompress-${module}-targets.cmake DESTINATION ${config_dir})
  endforeach()
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mcompressConfig.cmake.in
    ${PROJECT_BINARY_DIR}/mcompressConfig.cmake INSTALL_DESTINATION ${config_dir})
  # 0.x: any minor release may change the API.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/mcompressConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/mcompressConfig.cmake
                ${PROJECT_BINARY_DIR}/mcompressConfigVersion.cmake
          DESTINATION ${config_dir})
endfunction()
