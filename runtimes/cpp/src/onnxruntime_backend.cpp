// ONNX Runtime backend: a .onnx model written by `python -m export.onnx`, run on the CPU or, when
// asked and the library has it, on the CUDA execution provider. Compiled when CMake finds ONNX Runtime.
//
// The C++ API is initialised by hand (ORT_API_MANUAL_INIT) so that a library older than the headers
// is an Error instead of a null API table.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#include <onnxruntime_session_options_config_keys.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends.hpp"

namespace sunet::detail {
namespace {

// ONNX Runtime's messages can span lines; sunet errors are one line.
std::string first_line(const Ort::Exception& exc) {
  const std::string text = exc.what();
  return text.substr(0, text.find('\n'));
}

Ort::Env& environment() {
  static const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  if (!api) {
    throw Error(std::string("the ONNX Runtime library is version ") + OrtGetApiBase()->GetVersionString() +
                ", older than the headers sunet_runtime was compiled with (API " + std::to_string(ORT_API_VERSION) +
                "); use a library of version 1." + std::to_string(ORT_API_VERSION) + " or newer");
  }
  Ort::InitApi(api);
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "sunet_runtime");
  return env;
}

// The metadata key whose value (comma-separated graph transformer names) ONNX Runtime must not run on
// this graph: `python -m export.onnx --int8` writes it where an optimizer would change the graph's answer
// (sunet_deploy/artifact.py ORT_DISABLED_OPTIMIZERS_KEY; the Python adapter runtimes/ort.py obeys it too).
constexpr const char* kDisabledOptimizersKey = "sunet_deploy.ort_disabled_optimizers";

Ort::SessionOptions session_options(const BackendOptions& options, const std::string& path,
                                    const std::string& disabled_optimizers) {
  Ort::SessionOptions session;
  session.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  // The C/C++ API's spelling of Python's InferenceSession(..., disabled_optimizers=[...]): the same
  // comma-separated names (onnxruntime_session_options_config_keys.h).
  if (!disabled_optimizers.empty()) {
    session.AddConfigEntry(kOrtSessionOptionsDisableSpecifiedOptimizers, disabled_optimizers.c_str());
  }
  if (options.threads > 0) session.SetIntraOpNumThreads(options.threads);
  if (options.cuda) {
    const auto providers = Ort::GetAvailableProviders();
    if (std::find(providers.begin(), providers.end(), "CUDAExecutionProvider") == providers.end()) {
      throw Error(path + ": CUDA asked for, but this ONNX Runtime library has no CUDA execution provider "
                         "(build against onnxruntime-gpu's library)");
    }
    session.AppendExecutionProvider_CUDA(OrtCUDAProviderOptions{});
  }
  return session;
}

std::map<std::string, std::string> custom_metadata(const Ort::Session& session) {
  Ort::AllocatorWithDefaultOptions allocator;
  const Ort::ModelMetadata metadata = session.GetModelMetadata();
  std::map<std::string, std::string> strings;
  for (const auto& key : metadata.GetCustomMetadataMapKeysAllocated(allocator)) {
    strings[key.get()] = metadata.LookupCustomMetadataMapAllocated(key.get(), allocator).get();
  }
  return strings;
}

// The model's metadata, from a session that optimizes nothing (cheap, and the real session's options
// depend on the metadata).
std::map<std::string, std::string> probe_metadata(Ort::Env& env, const ORTCHAR_T* file) {
  Ort::SessionOptions probe;
  probe.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_DISABLE_ALL);
  return custom_metadata(Ort::Session(env, file, probe));
}

class OnnxRuntimeBackend final : public Backend {
 public:
  OnnxRuntimeBackend(const std::string& path, const BackendOptions& options) {
    Ort::Env& env = environment();
    try {
      const std::filesystem::path file(path);  // ORTCHAR_T paths: char here, wchar_t on Windows
      const auto metadata = probe_metadata(env, file.c_str());
      info_ = info_from_strings(metadata, path, "export.onnx");
      const auto disabled = metadata.find(kDisabledOptimizersKey);
      const std::string disabled_optimizers = disabled == metadata.end() ? "" : disabled->second;
      session_ = std::make_unique<Ort::Session>(env, file.c_str(), session_options(options, path, disabled_optimizers));
      Ort::AllocatorWithDefaultOptions allocator;
      input_ = session_->GetInputNameAllocated(0, allocator).get();
      output_ = session_->GetOutputNameAllocated(0, allocator).get();
    } catch (const Ort::Exception& exc) {
      throw Error(path + ": not a loadable ONNX model (" + first_line(exc) + ")");
    }
  }

  std::string name() const override { return "onnxruntime"; }
  const ModelInfo& info() const override { return info_; }

  Mask infer(const std::vector<float>& nchw, int height, int width) override {
    const auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const std::array<std::int64_t, 4> shape{1, 3, height, width};
    const char* input_name = input_.c_str();
    const char* output_name = output_.c_str();
    std::vector<Ort::Value> outputs;
    try {
      Ort::Value input = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(nchw.data()), nchw.size(),
                                                         shape.data(), shape.size());
      outputs = session_->Run(Ort::RunOptions{nullptr}, &input_name, &input, 1, &output_name, 1);
    } catch (const Ort::Exception& exc) {
      throw Error("ONNX Runtime inference failed: " + first_line(exc));
    }
    const auto type = outputs.at(0).GetTensorTypeAndShapeInfo();
    const std::vector<std::int64_t> dims = type.GetShape();
    if (info_.output == "labels") {
      // uint8 since export.onnx --argmax writes one byte per pixel; int64 from models exported before.
      const auto element = type.GetElementType();
      if ((element != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 && element != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) ||
          dims != std::vector<std::int64_t>{1, height, width}) {
        throw Error("the ONNX model's labels output is not uint8 or int64 1 x H x W");
      }
      return element == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8
                 ? labels_to_mask(outputs[0].GetTensorData<std::uint8_t>(), height, width)
                 : labels_to_mask(outputs[0].GetTensorData<std::int64_t>(), height, width);
    }
    if (type.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || dims.size() != 4 || dims[0] != 1 ||
        dims[2] != height || dims[3] != width) {
      throw Error("the ONNX model's logits output is not float32 1 x C x H x W");
    }
    return argmax(outputs[0].GetTensorData<float>(), static_cast<int>(dims[1]), height, width);
  }

 private:
  std::unique_ptr<Ort::Session> session_;
  ModelInfo info_;
  std::string input_;
  std::string output_;
};

}  // namespace

std::unique_ptr<Backend> load_onnxruntime(const std::string& path, const BackendOptions& options) {
  return std::make_unique<OnnxRuntimeBackend>(path, options);
}

}  // namespace sunet::detail
