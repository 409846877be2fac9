// sunet_runtime: run an exported SUNet segmentation model from C++.
//
//   auto backend = sunet::load_backend("model.onnx");         // or "model.pt2", "model.engine"
//   sunet::Image image = sunet::read_png("street.png");
//   sunet::Mask mask = sunet::segment(*backend, image);
//   sunet::write_mask_png("street_mask.png", mask, backend->info().palette);
//
// Pre-processing (RGB, (x / 255 - mean) / std, NCHW float32) and the argmax follow
// sunet_deploy.preprocess, with mean/std/palette read from the artifact's own metadata.
// Every failure is a sunet::Error whose message names the file and the reason.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sunet {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An 8-bit RGB image, rows top to bottom, pixels interleaved (R, G, B).
struct Image {
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> rgb;
};

// Class indices, one byte per pixel (models have at most 256 classes).
struct Mask {
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> labels;
};

using Color = std::array<std::uint8_t, 3>;

// What the artifact says about its model (sunet_deploy.metadata.ModelMetadata).
struct ModelInfo {
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  std::vector<std::string> classes;
  std::vector<Color> palette;
  std::string output = "logits";  // "logits" (N,C,H,W float32) or "labels" (N,H,W uint8; int64 in older exports)
  int input_height = 0;  // the input size the model was built for; 0 means any height (or width)
  int input_width = 0;
};

struct BackendOptions {
  int threads = 0;    // CPU threads for inference; 0 lets the runtime choose
  bool cuda = false;  // ONNX Runtime: run on its CUDA execution provider (AOTInductor packages and
                      // TensorRT engines run on the device they were built for)
};

// One inference engine. `infer` takes a normalised 1x3xHxW float32 tensor (see `normalize`).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual const ModelInfo& info() const = 0;
  virtual Mask infer(const std::vector<float>& nchw, int height, int width) = 0;
};

// Opens an artifact by its type: .onnx (ONNX Runtime), .pt2 (AOTInductor package) or .engine/.plan
// (TensorRT), each when this library was built with that backend. Refuses other files with a
// message that says what to export.
std::unique_ptr<Backend> load_backend(const std::string& artifact_path, const BackendOptions& options = {});

// The backends this build of the library contains, e.g. {"aoti", "onnxruntime"}.
std::vector<std::string> available_backends();

// Reads a PNG file (8/16-bit, gray/RGB/palette, alpha dropped) as RGB, like sunet_deploy's read_image.
Image read_png(const std::string& path);

// Writes a mask as a palette PNG whose pixel values are the class indices (written atomically).
void write_mask_png(const std::string& path, const Mask& mask, const std::vector<Color>& palette);

// RGB image -> 1x3xHxW float32, (x - 255 * mean) / (255 * std), computed as sunet_deploy does.
std::vector<float> normalize(const Image& image, const ModelInfo& info);

// C x H x W scores -> H x W indices of the largest score (the first one on ties, as numpy's argmax).
Mask argmax(const float* scores, int classes, int height, int width);

// The whole pipeline: checks the image against the model, normalises, runs, returns the mask.
Mask segment(Backend& backend, const Image& image);

}  // namespace sunet
