// Internal: the backend factories and what they share (metadata reading, labels to mask).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include "sunet/runtime.hpp"

namespace sunet::detail {

// ModelInfo from the plain-string metadata that `python -m export.onnx` and `python -m export.aoti`
// store ("sunet_deploy.mean", ...). `exporter` names the command that writes it, for the error messages.
ModelInfo info_from_strings(const std::map<std::string, std::string>& metadata, const std::string& path,
                            const std::string& exporter);

// Refuses metadata a backend cannot use (unknown output kind, no classes or more than a byte mask holds).
void check_info(const ModelInfo& info, const std::string& path);

// H x W class indices from a model with a built-in argmax -> Mask; refuses indices a byte mask cannot hold.
template <typename Index>
Mask labels_to_mask(const Index* labels, int height, int width) {
  Mask mask{height, width, std::vector<std::uint8_t>(static_cast<std::size_t>(height) * width)};
  for (std::size_t i = 0; i < mask.labels.size(); ++i) {
    if constexpr (!std::is_same_v<Index, std::uint8_t>) {
      if (labels[i] < 0 || labels[i] > 255) throw Error("the model returned class index " + std::to_string(labels[i]));
    }
    mask.labels[i] = static_cast<std::uint8_t>(labels[i]);
  }
  return mask;
}

#ifdef SUNET_WITH_AOTI
std::unique_ptr<Backend> load_aoti(const std::string& path, const BackendOptions& options);
#endif

#ifdef SUNET_WITH_ONNXRUNTIME
std::unique_ptr<Backend> load_onnxruntime(const std::string& path, const BackendOptions& options);
#endif

#ifdef SUNET_WITH_TENSORRT
std::unique_ptr<Backend> load_tensorrt(const std::string& path);
#endif

}  // namespace sunet::detail
