// sunet_predict ARTIFACT IMAGE MASK_OUT: segment one image with an exported SUNet.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "sunet/runtime.hpp"

namespace {

void print_usage(std::FILE* stream) {
  std::fprintf(stream,
               "usage: sunet_predict ARTIFACT IMAGE MASK_OUT\n"
               "  ARTIFACT  model.pt2 (python -m export.aoti) or model.engine (TensorRT, if built in)\n"
               "  IMAGE     PNG image of the size the model was exported for\n"
               "  MASK_OUT  palette PNG to write; its pixel values are the class indices\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
    print_usage(stdout);
    return 0;
  }
  if (argc != 4) {
    print_usage(stderr);
    return 2;
  }
  try {
    auto backend = sunet::load_backend(argv[1]);
    const sunet::Image image = sunet::read_png(argv[2]);
    const auto start = std::chrono::steady_clock::now();
    const sunet::Mask mask = sunet::segment(*backend, image);
    const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
    sunet::write_mask_png(argv[3], mask, backend->info().palette);
    std::printf("%s: %dx%d mask written to %s (%s backend, %.1f ms)\n", argv[2], mask.height, mask.width, argv[3],
                backend->name().c_str(), elapsed.count());
  } catch (const std::exception& exc) {
    std::fprintf(stderr, "error: %s\n", exc.what());
    return 1;
  }
  return 0;
}
