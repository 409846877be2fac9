// ModelInfo from an artifact's plain-string metadata (no JSON parser needed).
#include <sstream>
#include <string>
#include <vector>

#include "backends.hpp"

namespace sunet::detail {
namespace {

const char* const kFormat = "sunet-deploy-1";

class Reader {
 public:
  Reader(const std::map<std::string, std::string>& metadata, const std::string& path)
      : metadata_(metadata), path_(path) {}

  std::string text(const std::string& key) const {
    const auto found = metadata_.find("sunet_deploy." + key);
    if (found == metadata_.end()) throw Error(path_ + ": metadata has no '" + key + "' entry");
    return found->second;
  }

  // Parsed as double, then rounded to float, exactly like numpy's float32 conversion of the JSON numbers.
  std::vector<double> numbers(const std::string& key) const {
    std::istringstream stream(text(key));
    std::vector<double> values;
    double value = 0;
    while (stream >> value) values.push_back(value);
    if (!stream.eof()) throw Error(path_ + ": metadata entry '" + key + "' is not a list of numbers");
    return values;
  }

  std::array<float, 3> triple(const std::string& key) const {
    const auto values = numbers(key);
    if (values.size() != 3) throw Error(path_ + ": metadata entry '" + key + "' needs 3 numbers");
    return {static_cast<float>(values[0]), static_cast<float>(values[1]), static_cast<float>(values[2])};
  }

  Error error(const std::string& reason) const { return Error(path_ + ": " + reason); }

 private:
  const std::map<std::string, std::string>& metadata_;
  std::string path_;
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

}  // namespace

ModelInfo info_from_strings(const std::map<std::string, std::string>& metadata, const std::string& path) {
  const Reader read(metadata, path);
  if (!metadata.count("sunet_deploy.format")) {
    throw read.error("no sunet-deploy metadata; export the model with python -m export.aoti");
  }
  if (read.text("format") != kFormat) {
    throw read.error("metadata format '" + read.text("format") + "', this runtime reads '" + kFormat + "'");
  }
  ModelInfo info;
  info.mean = read.triple("mean");
  info.std = read.triple("std");
  info.classes = split_lines(read.text("classes"));
  info.output = read.text("output");
  info.resize_policy = read.text("resize_policy");
  if (info.output != "logits" && info.output != "labels") throw read.error("unknown output kind '" + info.output + "'");
  if (info.classes.empty() || info.classes.size() > 256) throw read.error("needs 1 to 256 classes");

  const auto palette = read.numbers("palette");
  if (palette.size() % 3 != 0) throw read.error("palette is not a list of RGB triples");
  for (std::size_t i = 0; i + 2 < palette.size(); i += 3) {
    info.palette.push_back({static_cast<std::uint8_t>(palette[i]), static_cast<std::uint8_t>(palette[i + 1]),
                            static_cast<std::uint8_t>(palette[i + 2])});
  }
  int batch = 0, channels = 0;
  char x1 = 0, x2 = 0, x3 = 0;
  std::istringstream shape(read.text("input_shape"));
  if (!(shape >> batch >> x1 >> channels >> x2 >> info.input_height >> x3 >> info.input_width) || batch != 1 ||
      channels != 3) {
    throw read.error("input shape '" + read.text("input_shape") + "' is not 1x3xHxW");
  }
  return info;
}

}  // namespace sunet::detail
