# The AOTInductor backend runs .pt2 packages with LibTorch, from the PyTorch wheel
# (CMAKE_PREFIX_PATH=torch.utils.cmake_prefix_path) or a LibTorch download.
if(SUNET_WITH_AOTI STREQUAL "OFF")
  message(STATUS "sunet_runtime: AOTInductor backend disabled (SUNET_WITH_AOTI=OFF)")
  return()
endif()

find_package(Torch QUIET)
if(NOT Torch_FOUND)
  sunet_backend_unavailable(SUNET_WITH_AOTI AOTInductor "LibTorch (hint: CMAKE_PREFIX_PATH=torch.utils.cmake_prefix_path)")
  return()
endif()

message(STATUS "sunet_runtime: AOTInductor backend enabled (LibTorch ${Torch_VERSION})")
target_sources(sunet_runtime PRIVATE src/aoti_backend.cpp)
target_link_libraries(sunet_runtime PUBLIC ${TORCH_LIBRARIES})
# TORCH_CXX_FLAGS carries the C++ ABI flag LibTorch was built with, which the application must share.
separate_arguments(SUNET_TORCH_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(sunet_runtime PUBLIC ${SUNET_TORCH_FLAGS})
target_compile_definitions(sunet_runtime PUBLIC SUNET_WITH_AOTI)
list(APPEND SUNET_BACKENDS aoti)
