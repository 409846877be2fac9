# The ONNX Runtime backend runs .onnx models with ONNX Runtime's C++ API (header-only, over the C API).
# Headers: ONNXRUNTIME_ROOT (a release folder, or the one fetch_onnxruntime_headers.sh fills), then
# the system (Debian 13: libonnxruntime-dev). Library: the same places, else the onnxruntime Python
# wheel of the Python CMake finds (hint: Python3_EXECUTABLE); the wheel ships no headers. The C API
# is versioned and backward compatible: headers of API N run with any library of version 1.N or newer.
if(SUNET_WITH_ONNXRUNTIME STREQUAL "OFF")
  message(STATUS "sunet_runtime: ONNX Runtime backend disabled (SUNET_WITH_ONNXRUNTIME=OFF)")
  return()
endif()

set(ONNXRUNTIME_ROOT "$ENV{ONNXRUNTIME_ROOT}" CACHE PATH "ONNX Runtime folder with include/ (and lib/)")
find_path(ONNXRUNTIME_INCLUDE_DIR onnxruntime_cxx_api.h
  HINTS "${ONNXRUNTIME_ROOT}" PATH_SUFFIXES include include/onnxruntime onnxruntime)
find_library(ONNXRUNTIME_LIBRARY onnxruntime HINTS "${ONNXRUNTIME_ROOT}" PATH_SUFFIXES lib lib64)

# The wheel's capi/libonnxruntime.so.1.x has the soname libonnxruntime.so.1: a link of that name in the
# build tree lets the linker record it and the build rpath find it.
if(NOT ONNXRUNTIME_LIBRARY)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND "${Python3_EXECUTABLE}" -c "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"
      OUTPUT_VARIABLE _sunet_ort_package OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    file(GLOB _sunet_ort_wheel_library "${_sunet_ort_package}/capi/libonnxruntime.so.1.*")
  endif()
  if(_sunet_ort_wheel_library)
    list(GET _sunet_ort_wheel_library 0 _sunet_ort_wheel_library)
    set(ONNXRUNTIME_LIBRARY "${CMAKE_CURRENT_BINARY_DIR}/onnxruntime/libonnxruntime.so.1")
    file(MAKE_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}/onnxruntime")
    file(CREATE_LINK "${_sunet_ort_wheel_library}" "${ONNXRUNTIME_LIBRARY}" SYMBOLIC)
  endif()
endif()

set(_sunet_ort_missing "")
if(NOT ONNXRUNTIME_INCLUDE_DIR)
  list(APPEND _sunet_ort_missing
    "ONNX Runtime headers (runtimes/cpp/fetch_onnxruntime_headers.sh DIR, then -DONNXRUNTIME_ROOT=DIR)")
endif()
if(NOT ONNXRUNTIME_LIBRARY)
  list(APPEND _sunet_ort_missing "the ONNX Runtime library (pip install onnxruntime, or -DONNXRUNTIME_ROOT)")
endif()
if(_sunet_ort_missing)
  sunet_backend_unavailable(SUNET_WITH_ONNXRUNTIME "ONNX Runtime" "${_sunet_ort_missing}")
  return()
endif()

file(STRINGS "${ONNXRUNTIME_INCLUDE_DIR}/onnxruntime_c_api.h" _sunet_ort_api REGEX "^#define ORT_API_VERSION ")
string(REGEX REPLACE "[^0-9]" "" _sunet_ort_api "${_sunet_ort_api}")
message(STATUS "sunet_runtime: ONNX Runtime backend enabled (headers of API ${_sunet_ort_api} in "
               "${ONNXRUNTIME_INCLUDE_DIR}, ${ONNXRUNTIME_LIBRARY})")
target_sources(sunet_runtime PRIVATE src/onnxruntime_backend.cpp)
target_include_directories(sunet_runtime PRIVATE "${ONNXRUNTIME_INCLUDE_DIR}")
target_link_libraries(sunet_runtime PRIVATE "${ONNXRUNTIME_LIBRARY}")
target_compile_definitions(sunet_runtime PUBLIC SUNET_WITH_ONNXRUNTIME)
list(APPEND SUNET_BACKENDS onnxruntime)
