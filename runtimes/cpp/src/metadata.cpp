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

// One dimension of an input shape: "?" (free) is 0, a positive number itself, anything else -1.
int parse_dimension(const std::string& text) {
  if (text == "?") return 0;
  int value = 0;
  std::istringstream stream(text);
  return (stream >> value) && stream.eof() && value > 0 ? value : -1;
}

// "?x3x?x?" (any size), "?x3x512x512" or "1x3x64x96": one 3-channel image must fit; a fixed height
// or width is kept in `info`, a free one is 0.
void read_input_shape(const Reader& read, ModelInfo& info) {
  const std::string text = read.text("input_shape");
  std::vector<int> dims;
  std::istringstream stream(text);
  for (std::string dim; std::getline(stream, dim, 'x');) dims.push_back(parse_dimension(dim));
  if (dims.size() != 4 || (dims[0] != 0 && dims[0] != 1) || dims[1] != 3 || dims[2] < 0 || dims[3] < 0) {
    throw read.error("input shape '" + text + "' does not take one RGB image (expected Nx3xHxW, N = 1 or ?)");
  }
  info.input_height = dims[2];
  info.input_width = dims[3];
}

}  // namespace

void check_info(const ModelInfo& info, const std::string& path) {
  if (info.output != "logits" && info.output != "labels") {
    throw Error(path + ": unknown output kind '" + info.output + "'");
  }
  if (info.classes.empty() || info.classes.size() > 256) throw Error(path + ": needs 1 to 256 classes");
}

ModelInfo info_from_strings(const std::map<std::string, std::string>& metadata, const std::string& path,
                            const std::string& exporter) {
  const Reader read(metadata, path);
  if (!metadata.count("sunet_deploy.format")) {
    throw read.error("no sunet-deploy metadata; export the model with python -m " + exporter);
  }
  if (read.text("format") != kFormat) {
    throw read.error("metadata format '" + read.text("format") + "', this runtime reads '" + kFormat +
                     "' (export the model again with python -m " + exporter + ")");
  }
  ModelInfo info;
  info.mean = read.triple("mean");
  info.std = read.triple("std");
  info.classes = split_lines(read.text("classes"));
  info.output = read.text("output");
  check_info(info, path);

  const auto palette = read.numbers("palette");
  if (palette.size() % 3 != 0) throw read.error("palette is not a list of RGB triples");
  for (std::size_t i = 0; i + 2 < palette.size(); i += 3) {
    info.palette.push_back({static_cast<std::uint8_t>(palette[i]), static_cast<std::uint8_t>(palette[i + 1]),
                            static_cast<std::uint8_t>(palette[i + 2])});
  }
  read_input_shape(read, info);
  return info;
}

}  // namespace sunet::detail
