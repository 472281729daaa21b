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
