# Each backend has an option AUTO (built when its dependencies are found), ON (they must be found)
# or OFF; cmake/<backend>.cmake finds what it needs and appends its name to SUNET_BACKENDS.
set(SUNET_BACKENDS "")

macro(sunet_backend_option var description)
  set(${var} AUTO CACHE STRING "Build the backend for ${description}: AUTO, ON or OFF")
  set_property(CACHE ${var} PROPERTY STRINGS AUTO ON OFF)
  if(NOT ${var} MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "${var} is '${${var}}'; it must be AUTO, ON or OFF")
  endif()
endmacro()

# A backend whose dependencies are missing: an error under ON, a note under AUTO.
function(sunet_backend_unavailable var backend missing)
  list(JOIN missing ", " missing)
  if(${var} STREQUAL "ON")
    message(FATAL_ERROR "${var}=ON but not found: ${missing}")
  endif()
  message(STATUS "sunet_runtime: ${backend} backend skipped, not found: ${missing}")
endfunction()
