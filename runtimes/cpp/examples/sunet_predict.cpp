// sunet_predict [OPTIONS] ARTIFACT IMAGE MASK_OUT: segment one image with an exported SUNet.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "sunet/runtime.hpp"

namespace {

void print_usage(std::FILE* stream) {
  std::string backends;
  for (const auto& name : sunet::available_backends()) backends += (backends.empty() ? "" : ", ") + name;
  std::fprintf(stream,
               "usage: sunet_predict [--threads N] [--cuda] [--repeat N] ARTIFACT IMAGE MASK_OUT\n"
               "  ARTIFACT     model.onnx (python -m export.onnx), model.pt2 (python -m export.aoti)\n"
               "               or model.engine (python -m export.tensorrt)\n"
               "  IMAGE        PNG image (of the size the model was exported for, if it has a fixed size)\n"
               "  MASK_OUT     palette PNG to write; its pixel values are the class indices\n"
               "  --threads N  CPU threads for inference (default: the runtime's choice)\n"
               "  --cuda       ONNX Runtime: run on its CUDA execution provider\n"
               "  --repeat N   segment the image N more times and print their median and minimum time\n"
               "backends in this build: %s\n",
               backends.c_str());
}

struct Arguments {
  sunet::BackendOptions options;
  int repeat = 0;
  std::vector<std::string> paths;
};

// A count for --threads or --repeat, or -1 when the text is not one.
int parse_count(const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return *text && !*end && value >= 0 && value <= 1000000 ? static_cast<int>(value) : -1;
}

// False for a usage error.
bool parse_arguments(int argc, char** argv, Arguments& args) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--cuda") {
      args.options.cuda = true;
    } else if (arg == "--threads" || arg == "--repeat") {
      const int value = i + 1 < argc ? parse_count(argv[++i]) : -1;
      if (value < 0) return false;
      (arg == "--threads" ? args.options.threads : args.repeat) = value;
    } else if (arg.rfind("--", 0) == 0) {
      return false;
    } else {
      args.paths.push_back(arg);
    }
  }
  return args.paths.size() == 3;
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
    print_usage(stdout);
    return 0;
  }
  Arguments args;
  if (!parse_arguments(argc, argv, args)) {
    print_usage(stderr);
    return 2;
  }
  const std::string& artifact = args.paths[0];
  const std::string& image_path = args.paths[1];
  const std::string& mask_path = args.paths[2];
  try {
    auto backend = sunet::load_backend(artifact, args.options);
    const sunet::Image image = sunet::read_png(image_path);
    const auto start = std::chrono::steady_clock::now();
    const sunet::Mask mask = sunet::segment(*backend, image);
    const double first_ms = milliseconds_since(start);
    std::vector<double> times_ms;
    for (int i = 0; i < args.repeat; ++i) {
      const auto again = std::chrono::steady_clock::now();
      sunet::segment(*backend, image);
      times_ms.push_back(milliseconds_since(again));
    }
    sunet::write_mask_png(mask_path, mask, backend->info().palette);
    std::printf("%s: %dx%d mask written to %s (%s backend, %.1f ms)\n", image_path.c_str(), mask.height, mask.width,
                mask_path.c_str(), backend->name().c_str(), first_ms);
    if (!times_ms.empty()) {
      std::sort(times_ms.begin(), times_ms.end());
      const std::size_t n = times_ms.size();
      const double median = (times_ms[(n - 1) / 2] + times_ms[n / 2]) / 2;
      std::printf("%zu more runs: median %.2f ms, min %.2f ms\n", n, median, times_ms.front());
    }
  } catch (const std::exception& exc) {
    std::fprintf(stderr, "error: %s\n", exc.what());
    return 1;
  }
  return 0;
}
