// PNG reading and mask writing with the system libpng.
//
// libpng reports errors by longjmp; the functions below keep every C++ object that outlives a
// jump declared before setjmp, so no destructor is skipped.
#include <png.h>
#include <unistd.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sunet/runtime.hpp"

namespace sunet {
namespace {

struct File {
  std::FILE* handle = nullptr;
  ~File() {
    if (handle) std::fclose(handle);
  }
};

void check_png_signature(std::FILE* file, const std::string& path) {
  png_byte signature[8] = {};
  const std::size_t read = std::fread(signature, 1, sizeof signature, file);
  if (read < sizeof signature || png_sig_cmp(signature, 0, sizeof signature) != 0) {
    throw Error(path + ": not a PNG image (the C++ runtime reads PNG; decode other formats yourself "
                       "and pass RGB pixels to sunet::segment)");
  }
}

// Expands any PNG to 8-bit RGB the way OpenCV's decoder + sunet_deploy.read_image do:
// palette -> colours, gray -> replicated, 16-bit -> rounded to 8 bits, alpha dropped (not blended).
void set_rgb8_transforms(png_structp png, png_infop info) {
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_scale_16(png);
  if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (!(color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
}

void on_png_error(png_structp png, png_const_charp message) {
  auto* reason = static_cast<std::string*>(png_get_error_ptr(png));
  *reason = message;
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

}  // namespace

Image read_png(const std::string& path) {
  File file{std::fopen(path.c_str(), "rb")};
  if (!file.handle) throw Error(path + ": cannot be opened (" + std::strerror(errno) + ")");
  check_png_signature(file.handle, path);

  Image image;
  std::vector<png_bytep> rows;
  std::string reason;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reason, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw Error(path + ": out of memory while reading");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": corrupt PNG image (" + reason + ")");
  }
  png_init_io(png, file.handle);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  set_rgb8_transforms(png, info);
  image.height = static_cast<int>(png_get_image_height(png, info));
  image.width = static_cast<int>(png_get_image_width(png, info));
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  image.rgb.resize(row_bytes * image.height);
  rows.resize(image.height);
  for (int y = 0; y < image.height; ++y) rows[y] = image.rgb.data() + y * row_bytes;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  if (row_bytes != static_cast<std::size_t>(image.width) * 3) {
    throw Error(path + ": unexpected PNG layout after conversion to RGB");
  }
  return image;
}

namespace {

// Writes the PNG to an open file; returns false (with `reason`) on a libpng error.
bool write_palette_png(std::FILE* file, const Mask& mask, const std::vector<Color>& palette, std::string& reason) {
  std::vector<png_color> colors(256, png_color{0, 0, 0});  // indices past the palette (e.g. 255) are black
  for (std::size_t i = 0; i < palette.size() && i < colors.size(); ++i) {
    colors[i] = png_color{palette[i][0], palette[i][1], palette[i][2]};
  }
  std::vector<png_bytep> rows(mask.height);
  for (int y = 0; y < mask.height; ++y) {
    rows[y] = const_cast<png_bytep>(mask.labels.data() + static_cast<std::size_t>(y) * mask.width);
  }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &reason, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    reason = "out of memory";
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, mask.width, mask.height, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_PLTE(png, info, colors.data(), static_cast<int>(colors.size()));
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

void write_mask_png(const std::string& path, const Mask& mask, const std::vector<Color>& palette) {
  if (mask.height <= 0 || mask.width <= 0 || mask.labels.size() != static_cast<std::size_t>(mask.height) * mask.width) {
    throw Error(path + ": refusing to write an empty or inconsistent mask");
  }
  // Write next to the target, then rename: the mask is either complete or absent.
  std::string tmp = path + ".XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) throw Error(path + ": cannot be written (" + std::strerror(errno) + ")");
  std::string reason;
  bool ok = false;
  if (std::FILE* file = fdopen(fd, "wb")) {
    ok = write_palette_png(file, mask, palette, reason);
    ok = (std::fflush(file) == 0) && (fsync(fd) == 0) && ok;
    if (reason.empty() && !ok) reason = std::strerror(errno);
    ok = (std::fclose(file) == 0) && ok;
  } else {
    reason = std::strerror(errno);
    close(fd);
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    reason = std::strerror(errno);
  }
  if (!ok) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot be written (" + reason + ")");
  }
}

}  // namespace sunet
