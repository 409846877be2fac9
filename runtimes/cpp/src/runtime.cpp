// Pre/post-processing shared by every backend, and the choice of backend for an artifact.
#include <cctype>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "backends.hpp"
#include "sunet/runtime.hpp"

namespace sunet {

std::vector<float> normalize(const Image& image, const ModelInfo& info) {
  // Same float32 arithmetic as sunet_deploy.pipeline.normalize.Normalization, so inputs are bit-identical.
  std::array<float, 3> offset{};
  std::array<float, 3> scale{};
  for (int c = 0; c < 3; ++c) {
    offset[c] = info.mean[c] * 255.0f;
    scale[c] = 1.0f / (info.std[c] * 255.0f);
  }
  const std::size_t plane = static_cast<std::size_t>(image.height) * image.width;
  std::vector<float> nchw(3 * plane);
  for (std::size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      nchw[c * plane + i] = (static_cast<float>(image.rgb[3 * i + c]) - offset[c]) * scale[c];
    }
  }
  return nchw;
}

Mask argmax(const float* scores, int classes, int height, int width) {
  if (classes < 1 || classes > 256) throw Error("argmax: " + std::to_string(classes) + " classes do not fit a byte mask");
  Mask mask{height, width, std::vector<std::uint8_t>(static_cast<std::size_t>(height) * width)};
  const std::size_t plane = mask.labels.size();
  for (std::size_t i = 0; i < plane; ++i) {
    int best = 0;
    for (int c = 1; c < classes; ++c) {
      if (scores[c * plane + i] > scores[best * plane + i]) best = c;
    }
    mask.labels[i] = static_cast<std::uint8_t>(best);
  }
  return mask;
}

Mask segment(Backend& backend, const Image& image) {
  const ModelInfo& info = backend.info();
  if (image.height <= 0 || image.width <= 0 || image.rgb.size() != static_cast<std::size_t>(image.height) * image.width * 3) {
    throw Error("segment: expected an HxWx3 RGB image, got " + std::to_string(image.rgb.size()) + " bytes for " +
                std::to_string(image.height) + "x" + std::to_string(image.width));
  }
  const auto fits = [](int size, int fixed) { return fixed == 0 || size == fixed; };
  if (!fits(image.height, info.input_height) || !fits(image.width, info.input_width)) {
    const auto size = [](int fixed) { return fixed ? std::to_string(fixed) : std::string("?"); };
    throw Error("the model takes " + size(info.input_height) + "x" + size(info.input_width) +
                " images only, this one is " + std::to_string(image.height) + "x" + std::to_string(image.width) +
                " (export the model for this size, or resize the image)");
  }
  return backend.infer(normalize(image, info), image.height, image.width);
}

namespace {

std::string suffix_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string suffix = path.substr(dot);
  for (char& ch : suffix) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return suffix;
}

void check_readable(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": no such file or not readable");
}

// An artifact this build cannot run, with the backend it would need.
Error missing_backend(const std::string& path, const std::string& what, const std::string& backend,
                     const std::string& needs) {
  return Error(path + ": " + what + ", but this build of sunet_runtime has no " + backend +
               " backend (rebuild where CMake finds " + needs + ", see docs/cpp.md)");
}

}  // namespace

std::vector<std::string> available_backends() {
  std::vector<std::string> names;
#ifdef SUNET_WITH_AOTI
  names.emplace_back("aoti");
#endif
#ifdef SUNET_WITH_ONNXRUNTIME
  names.emplace_back("onnxruntime");
#endif
#ifdef SUNET_WITH_TENSORRT
  names.emplace_back("tensorrt");
#endif
  return names;
}

std::unique_ptr<Backend> load_backend(const std::string& artifact_path, const BackendOptions& options) {
  check_readable(artifact_path);
  const std::string suffix = suffix_of(artifact_path);
  if (suffix == ".onnx") {
#ifdef SUNET_WITH_ONNXRUNTIME
    return detail::load_onnxruntime(artifact_path, options);
#else
    throw missing_backend(artifact_path, "an ONNX model", "ONNX Runtime", "ONNX Runtime");
#endif
  }
  if (suffix == ".pt2") {
#ifdef SUNET_WITH_AOTI
    return detail::load_aoti(artifact_path, options);
#else
    throw missing_backend(artifact_path, "an AOTInductor package", "AOTInductor", "LibTorch");
#endif
  }
  if (suffix == ".engine" || suffix == ".plan") {
#ifdef SUNET_WITH_TENSORRT
    return detail::load_tensorrt(artifact_path);
#else
    throw missing_backend(artifact_path, "a TensorRT engine", "TensorRT", "TensorRT and CUDA");
#endif
  }
  throw Error(artifact_path + ": unknown model file type '" + suffix +
              "'; the C++ runtime reads .onnx (ONNX Runtime), .pt2 (AOTInductor) and .engine/.plan (TensorRT)");
}

}  // namespace sunet
