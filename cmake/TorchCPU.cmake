# Imports LibTorch's CPU libraries from the torch wheel without its CUDA-dependent CMake config.
# Sets Torch_FOUND and TORCH_LIBRARIES like find_package(Torch).
set(_torch_root "")
foreach(_prefix ${CMAKE_PREFIX_PATH})
  get_filename_component(_candidate "${_prefix}/../.." ABSOLUTE)
  if(EXISTS "${_candidate}/lib/libtorch_cpu.so")
    set(_torch_root "${_candidate}")
  endif()
endforeach()
if(_torch_root)
  add_library(condense_torch_cpu INTERFACE)
  target_include_directories(condense_torch_cpu SYSTEM INTERFACE
    "${_torch_root}/include" "${_torch_root}/include/torch/csrc/api/include")
  target_link_libraries(condense_torch_cpu INTERFACE
    "${_torch_root}/lib/libtorch_cpu.so" "${_torch_root}/lib/libc10.so")
  target_compile_definitions(condense_torch_cpu INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
  set(Torch_FOUND TRUE)
  set(TORCH_LIBRARIES condense_torch_cpu)
  set(TORCH_INSTALL_PREFIX "${_torch_root}")
  message(STATUS "condense: LibTorch CPU libraries from ${_torch_root}")
elseif(CONDENSE_REQUIRE_TORCH)
  message(FATAL_ERROR "condense: no LibTorch found in CMAKE_PREFIX_PATH; pass -DCMAKE_PREFIX_PATH=$(python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')")
endif()
