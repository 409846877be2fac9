// Internal: the backend factories and the metadata reader they share.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "sunet/runtime.hpp"

namespace sunet::detail {

// ModelInfo from the plain-string metadata `python -m export.aoti` stores ("sunet_deploy.mean", ...).
ModelInfo info_from_strings(const std::map<std::string, std::string>& metadata, const std::string& path);

std::unique_ptr<Backend> load_aoti(const std::string& path);

#ifdef SUNET_WITH_TENSORRT
std::unique_ptr<Backend> load_tensorrt(const std::string& path);
#endif

}  // namespace sunet::detail
