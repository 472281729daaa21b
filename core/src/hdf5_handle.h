#pragma once
// HDF5 plumbing of the model file: the C API only, through a small RAII Handle. The model file
// needs chunk, filter and object-header controls that the C++ wrapper does not expose, and it
// turns every failed call into an mcompress exception itself, so no H5::Exception can escape.

#include <hdf5.h>

#include <string>
#include <utility>

#include "packed_arrays.h"
#include "tensor_codec.h"

namespace mcompress::model_file {

// Turns off HDF5's printing of its error stack to stderr while in scope, restoring whatever
// the caller had configured (other code in the process may rely on it).
class QuietHdf5Errors {
 public:
  QuietHdf5Errors() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5Errors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The descriptions on HDF5's current error stack, innermost (the cause) first.
std::string hdf5_error_detail();
// Why a read of filtered data failed, from HDF5's error stack: "(Fletcher-32 checksum
// mismatch) (HDF5: ...)" or "(checksum or decompression failure) (HDF5: ...)".
std::string corrupt_data_detail();

template <typename ErrorT>
[[noreturn]] void h5_fail(const std::string& path, const std::string& what) {
  throw ErrorT(path + ": " + what + " (HDF5: " + hdf5_error_detail() + ")");
}

template <typename ErrorT>
void h5_check(herr_t status, const std::string& path, const std::string& what) {
  if (status < 0) h5_fail<ErrorT>(path, what);
}

// Owns one HDF5 identifier and closes it with the matching H5*close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed straight to H5* calls

  // Closes now and reports whether HDF5 accepted the close (it flushes on close).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0 && close_ != nullptr) status = close_(id_);
    id_ = H5I_INVALID_HID;
    return status;
  }

 private:
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

template <typename ErrorT>
Handle checked(hid_t id, Handle::Closer close, const std::string& path, const std::string& what) {
  if (id < 0) h5_fail<ErrorT>(path, what);
  return Handle(id, close);
}

std::string describe_path(const std::string& name);

// Whether a dataset's type is `format` in either byte order (HDF5 swaps bytes on read).
bool is_half_format(hid_t type, const HalfFormat& format);
std::string describe_type(hid_t type);

// The HDF5 type of `dtype`: little-endian in the file, native in memory. The 16-bit float
// types are built, so they live in `owner`. Instantiated for IoError and FormatError.
template <typename ErrorT>
hid_t hdf5_type(packed::Dtype dtype, bool file, Handle& owner, const std::string& path);

}  // namespace mcompress::model_file
