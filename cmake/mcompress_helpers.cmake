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
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  mcompress_set_warnings(${target})
endfunction()

function(mcompress_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(MCOMPRESS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Every translation unit that includes <torch/torch.h> costs ~15 s on two cores; a
# precompiled header per target brings each of them down to a couple of seconds.
function(mcompress_use_torch_pch target)
  target_precompile_headers(${target} PRIVATE <torch/torch.h>)
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
