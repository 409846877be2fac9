// TensorRT backend (TensorRT 10+): a serialized engine plus its JSON sidecar `<engine>.json`,
// both written by `python -m export.tensorrt`. Compiled only when CMake finds TensorRT and CUDA.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends.hpp"

namespace sunet::detail {
namespace {

using nlohmann::json;

const char* const kSidecarFormat = "sunet-deploy-tensorrt-engine-2";

class Logger final : public nvinfer1::ILogger {
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kERROR) std::fprintf(stderr, "TensorRT: %s\n", message);
  }
};

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

class DeviceBuffer {
 public:
  ~DeviceBuffer() { cudaFree(ptr_); }
  void* ensure(std::size_t bytes) {
    if (bytes > bytes_) {
      cudaFree(ptr_);
      ptr_ = nullptr;
      bytes_ = 0;
      check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc");
      bytes_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot be opened");
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// The sidecar (sunet_deploy.engine_env) holds the engine's ArtifactInfo under "artifact", whose
// "metadata" is the ModelMetadata.
ModelInfo read_sidecar(const std::string& engine_path) {
  const std::string path = engine_path + ".json";
  std::ifstream file(path);
  if (!file) throw Error(engine_path + ": no metadata sidecar " + path + " (written by python -m export.tensorrt)");
  ModelInfo info;
  try {
    const json sidecar = json::parse(file);
    if (sidecar.value("format", "") != kSidecarFormat) {
      throw Error(path + ": not a " + kSidecarFormat + " sidecar; rebuild the engine with python -m export.tensorrt");
    }
    const json& meta = sidecar.at("artifact").at("metadata");
    for (int c = 0; c < 3; ++c) {
      info.mean[c] = static_cast<float>(meta.at("mean").at(c).get<double>());
      info.std[c] = static_cast<float>(meta.at("std").at(c).get<double>());
    }
    info.classes = meta.at("classes").get<std::vector<std::string>>();
    for (const auto& color : meta.at("palette")) {
      info.palette.push_back({color.at(0).get<std::uint8_t>(), color.at(1).get<std::uint8_t>(), color.at(2).get<std::uint8_t>()});
    }
    info.output = meta.value("output", std::string("logits"));
  } catch (const json::exception& exc) {
    throw Error(path + ": not valid sunet-deploy metadata (" + exc.what() + ")");
  }
  check_info(info, path);
  return info;
}

std::size_t element_size(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT64: return 8;
    case nvinfer1::DataType::kUINT8: return 1;
    default: throw Error("TensorRT engine output has an unsupported data type (expected float32 logits or int labels)");
  }
}

std::string type_name(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return "FP32";
    case nvinfer1::DataType::kHALF: return "FP16";
    case nvinfer1::DataType::kINT8: return "INT8";
    case nvinfer1::DataType::kINT32: return "INT32";
    case nvinfer1::DataType::kINT64: return "INT64";
    case nvinfer1::DataType::kUINT8: return "UINT8";
    default: return "data type " + std::to_string(static_cast<int>(type));
  }
}

// This backend feeds FP32 images and reads FP32 logits or UINT8/INT32/INT64 labels (UINT8 from
// export.onnx --argmax, INT64 from older exports); an engine whose I/O is
// FP16 (a graph exported without FP32 inputs and outputs) is refused here, in one line, not misread.
void check_io_types(const nvinfer1::ICudaEngine& engine, const std::string& input, const std::string& output,
                    const std::string& path) {
  const nvinfer1::DataType in = engine.getTensorDataType(input.c_str());
  if (in != nvinfer1::DataType::kFLOAT) {
    throw Error(path + ": engine input '" + input + "' is " + type_name(in) + "; this backend feeds FP32 images "
                "(python -m export.onnx keeps FP32 inputs and outputs, with --fp16 and --int8 too)");
  }
  const nvinfer1::DataType out = engine.getTensorDataType(output.c_str());
  if (out != nvinfer1::DataType::kFLOAT && out != nvinfer1::DataType::kUINT8 && out != nvinfer1::DataType::kINT32 &&
      out != nvinfer1::DataType::kINT64) {
    throw Error(path + ": engine output '" + output + "' is " + type_name(out) +
                "; this backend reads FP32 logits or UINT8/INT32/INT64 labels");
  }
}

class TensorRTBackend final : public Backend {
 public:
  explicit TensorRTBackend(const std::string& path) : info_(read_sidecar(path)) {
    const std::vector<char> blob = read_bytes(path);
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (runtime_) engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(path + ": cannot be deserialized as a TensorRT engine (another kind of file, or built by another "
                         "TensorRT version or for another GPU)");
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(path + ": cannot create a TensorRT execution context");
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? input_ : output_) = name;
    }
    if (input_.empty() || output_.empty()) throw Error(path + ": engine needs one input and one output tensor");
    check_io_types(*engine_, input_, output_, path);
    check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }

  ~TensorRTBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }
  const ModelInfo& info() const override { return info_; }

  Mask infer(const std::vector<float>& nchw, int height, int width) override {
    if (!context_->setInputShape(input_.c_str(), nvinfer1::Dims4{1, 3, height, width})) {
      throw Error("input 1x3x" + std::to_string(height) + "x" + std::to_string(width) +
                  " is outside the engine's optimization profile; rebuild it with python -m export.tensorrt --min/--max");
    }
    const nvinfer1::Dims dims = context_->getTensorShape(output_.c_str());
    std::size_t count = 1;
    for (int i = 0; i < dims.nbDims; ++i) count *= static_cast<std::size_t>(dims.d[i]);
    const nvinfer1::DataType type = engine_->getTensorDataType(output_.c_str());
    const std::size_t out_bytes = count * element_size(type);

    void* input = input_buffer_.ensure(nchw.size() * sizeof(float));
    void* output = output_buffer_.ensure(out_bytes);
    std::vector<unsigned char> host(out_bytes);
    check_cuda(cudaMemcpyAsync(input, nchw.data(), nchw.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "copy to device");
    bind(input_, input);
    bind(output_, output);
    if (!context_->enqueueV3(stream_)) throw Error("TensorRT inference failed (enqueueV3)");
    check_cuda(cudaMemcpyAsync(host.data(), output, out_bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
    check_cuda(cudaStreamSynchronize(stream_), "stream synchronize");

    if (type == nvinfer1::DataType::kFLOAT) {
      if (dims.nbDims != 4) throw Error("TensorRT engine returned logits that are not N x C x H x W");
      return argmax(reinterpret_cast<const float*>(host.data()), static_cast<int>(dims.d[1]), height, width);
    }
    if (count != static_cast<std::size_t>(height) * width) throw Error("TensorRT engine returned labels that are not 1 x H x W");
    switch (type) {
      case nvinfer1::DataType::kUINT8: return labels_to_mask(reinterpret_cast<const std::uint8_t*>(host.data()), height, width);
      case nvinfer1::DataType::kINT64: return labels_to_mask(reinterpret_cast<const std::int64_t*>(host.data()), height, width);
      default: return labels_to_mask(reinterpret_cast<const std::int32_t*>(host.data()), height, width);
    }
  }

 private:
  void bind(const std::string& name, void* address) {
    if (!context_->setTensorAddress(name.c_str(), address)) {
      throw Error("TensorRT refused the device address of tensor '" + name + "' (setTensorAddress)");
    }
  }

  ModelInfo info_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::string input_;
  std::string output_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer input_buffer_;
  DeviceBuffer output_buffer_;
};

}  // namespace

std::unique_ptr<Backend> load_tensorrt(const std::string& path) { return std::make_unique<TensorRTBackend>(path); }

}  // namespace sunet::detail
