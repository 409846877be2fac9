# The TensorRT backend needs NvInfer.h + libnvinfer, the CUDA runtime and nlohmann_json (to read the
# engine's JSON sidecar). Hints: -DTensorRT_ROOT=/path/to/TensorRT (include/ and lib/ below it),
# -DTensorRT_INCLUDE_DIR and -DTensorRT_LIBRARY_DIR (e.g. pip's site-packages/tensorrt_libs, which holds
# only libnvinfer.so.<major>, no headers and no unversioned libnvinfer.so), CUDAToolkit_ROOT.
if(SUNET_WITH_TENSORRT STREQUAL "OFF")
  message(STATUS "sunet_runtime: TensorRT backend disabled (SUNET_WITH_TENSORRT=OFF)")
  return()
endif()

find_path(TensorRT_INCLUDE_DIR NvInfer.h HINTS ${TensorRT_ROOT} ENV TensorRT_ROOT PATH_SUFFIXES include)
set(_sunet_trt_hints HINTS ${TensorRT_LIBRARY_DIR} ${TensorRT_ROOT} ENV TensorRT_ROOT PATH_SUFFIXES lib lib64)
# Windows builds and some packages name the library after its major version.
find_library(TensorRT_LIBRARY NAMES nvinfer nvinfer_11 nvinfer_10 ${_sunet_trt_hints})
if(NOT TensorRT_LIBRARY AND TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  # Only libnvinfer.so.<major> (pip's tensorrt_libs): the major version is the headers' (NvInferVersion.h
  # defines NV_TENSORRT_MAJOR in 10.0, TRT_MAJOR_ENTERPRISE from which it is defined in later releases).
  file(STRINGS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _sunet_trt_major
       REGEX "^#define (NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE) +[0-9]+")
  string(REGEX MATCH "[0-9]+" _sunet_trt_major "${_sunet_trt_major}")
  if(_sunet_trt_major)
    find_library(TensorRT_LIBRARY NAMES libnvinfer.so.${_sunet_trt_major} ${_sunet_trt_hints})
  endif()
endif()
if(TensorRT_INCLUDE_DIR AND TensorRT_LIBRARY)
  message(STATUS "sunet_runtime: TensorRT found: ${TensorRT_LIBRARY}, headers ${TensorRT_INCLUDE_DIR}")
endif()
find_package(CUDAToolkit QUIET)
find_package(nlohmann_json 3 QUIET)

set(_sunet_trt_missing "")
if(NOT TensorRT_INCLUDE_DIR OR NOT TensorRT_LIBRARY)
  list(APPEND _sunet_trt_missing "TensorRT (NvInfer.h, libnvinfer, hint: TensorRT_ROOT)")
endif()
if(NOT CUDAToolkit_FOUND)
  list(APPEND _sunet_trt_missing "CUDA toolkit")
endif()
if(NOT nlohmann_json_FOUND)
  list(APPEND _sunet_trt_missing "nlohmann_json (apt-get install nlohmann-json3-dev)")
endif()
if(_sunet_trt_missing)
  sunet_backend_unavailable(SUNET_WITH_TENSORRT TensorRT "${_sunet_trt_missing}")
  return()
endif()

message(STATUS "sunet_runtime: TensorRT backend enabled (${TensorRT_LIBRARY})")
target_sources(sunet_runtime PRIVATE src/tensorrt_backend.cpp)
target_include_directories(sunet_runtime PRIVATE ${TensorRT_INCLUDE_DIR})
target_link_libraries(sunet_runtime PRIVATE ${TensorRT_LIBRARY} CUDA::cudart nlohmann_json::nlohmann_json)
target_compile_definitions(sunet_runtime PUBLIC SUNET_WITH_TENSORRT)
list(APPEND SUNET_BACKENDS tensorrt)
