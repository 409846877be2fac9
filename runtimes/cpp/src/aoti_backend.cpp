// AOTInductor backend: a .pt2 package written by `python -m export.aoti`, run by LibTorch.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cctype>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "backends.hpp"

namespace sunet::detail {
namespace {

// LibTorch's messages span lines; sunet errors are one line.
std::string one_line(const c10::Error& exc) {
  std::string text = exc.what_without_backtrace();
  std::string line;
  bool space = false;
  for (char ch : text) {
    const bool blank = std::isspace(static_cast<unsigned char>(ch));
    if (blank && !line.empty()) space = true;
    if (!blank) {
      if (space) line += ' ';
      line += ch;
      space = false;
    }
  }
  return line;
}

// A .pt2 package is a zip archive; checking its magic first gives a clear error for other files.
void check_zip(const std::string& path) {
  char magic[4] = {};
  std::ifstream(path, std::ios::binary).read(magic, sizeof magic);
  if (std::string(magic, sizeof magic) != std::string("PK\x03\x04", 4)) {
    throw Error(path + ": not an AOTInductor package (.pt2 files are zip archives written by python -m export.aoti)");
  }
}

class AotiBackend final : public Backend {
 public:
  AotiBackend(const std::string& path, const BackendOptions& options) {
    check_zip(path);
    if (options.threads > 0) at::set_num_threads(options.threads);  // LibTorch's setting is per process
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
    } catch (const c10::Error& exc) {
      throw Error(path + ": cannot be loaded as an AOTInductor package (" + one_line(exc) + ")");
    }
    const auto metadata = loader_->get_metadata();
    info_ = info_from_strings(std::map<std::string, std::string>(metadata.begin(), metadata.end()), path, "export.aoti");
    const auto device = metadata.find("AOTI_DEVICE_KEY");
    device_ = c10::Device(device == metadata.end() ? "cpu" : device->second);
  }

  std::string name() const override { return "aoti"; }
  const ModelInfo& info() const override { return info_; }

  Mask infer(const std::vector<float>& nchw, int height, int width) override {
    c10::InferenceMode guard;
    auto input = at::from_blob(const_cast<float*>(nchw.data()), {1, 3, height, width}, at::kFloat);
    std::vector<at::Tensor> outputs;
    try {
      outputs = loader_->run({input.to(device_)});
    } catch (const c10::Error& exc) {
      throw Error("AOTInductor inference failed: " + one_line(exc));
    }
    at::Tensor out = outputs.at(0).to(at::kCPU);
    if (info_.output == "labels") {
      out = out.reshape({height, width}).to(at::kLong).contiguous();
      return labels_to_mask(out.data_ptr<std::int64_t>(), height, width);
    }
    out = out.to(at::kFloat).contiguous();
    if (out.dim() != 4 || out.size(2) != height || out.size(3) != width) {
      throw Error("AOTInductor model returned logits of an unexpected shape");
    }
    return argmax(out.data_ptr<float>(), static_cast<int>(out.size(1)), height, width);
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  ModelInfo info_;
  c10::Device device_{at::kCPU};
};

}  // namespace

std::unique_ptr<Backend> load_aoti(const std::string& path, const BackendOptions& options) {
  return std::make_unique<AotiBackend>(path, options);
}

}  // namespace sunet::detail
