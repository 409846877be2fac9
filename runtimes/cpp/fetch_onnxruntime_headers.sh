#!/usr/bin/env bash
# fetch_onnxruntime_headers.sh [DIR]: ONNX Runtime's C/C++ headers into DIR/include (default
# build/onnxruntime), for building the ONNX Runtime backend against the onnxruntime Python wheel's
# library, which ships without headers.
#
# The headers come from Debian 13 (trixie)'s libonnxruntime-dev package (ORT 1.21, C API version 21),
# downloaded and unpacked with apt-get and dpkg-deb, on Debian 12 or 13 alike: a private apt state
# under DIR reads trixie's package index, so nothing is installed and the system's apt sources are
# left alone. Headers of API 21 run with any ONNX Runtime library of version 1.21 or newer.
# Then: cmake -S runtimes/cpp -B build/cpp -DONNXRUNTIME_ROOT=DIR
set -euo pipefail

dest=$(realpath -m "${1:-build/onnxruntime}")
package=libonnxruntime-dev
suite=trixie
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

if [[ -f $dest/include/onnxruntime_cxx_api.h ]]; then
  echo "ONNX Runtime headers already in $dest/include"
  exit 0
fi
for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool not found: this script fetches the headers from Debian's packages; elsewhere, unpack an" \
         "ONNX Runtime release archive and pass its folder as -DONNXRUNTIME_ROOT" >&2
    exit 1
  fi
done

mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc/sources.list.d" \
         "$work/etc/preferences.d" "$work/deb"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian $suite main" > "$work/etc/sources.list"
apt_options=(
  -o "Dir::Etc=$work/etc" -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o "Dir::State::status=/dev/null" -o "APT::Architecture=$(dpkg --print-architecture)" -o "Acquire::Languages=none"
  -o "APT::Sandbox::User=$(id -un)"
)
apt-get "${apt_options[@]}" -qq update
(cd "$work/deb" && apt-get "${apt_options[@]}" -qq download "$package")
dpkg-deb -x "$work/deb/"*.deb "$work/root"

rm -rf "$dest/include"
mv "$work/root/usr/include/onnxruntime" "$dest/include"
api=$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$dest/include/onnxruntime_c_api.h")
echo "ONNX Runtime headers (C API version $api, from Debian $suite's $package) in $dest/include"
echo "next: cmake -S runtimes/cpp -B build/cpp -DONNXRUNTIME_ROOT=$dest"
