#pragma once
// Raw HDF5 C API helpers for tests that inspect or break model files as docs/format.md
// describes them, without going through ModelFile. Header-only: the test binaries that
// include it (core, apps) link HDF5; the support library does not.

#include <gtest/gtest.h>
#include <hdf5.h>

#include <functional>
#include <string>
#include <vector>

#include "test_support.h"

namespace mcompress::testing {

// Opens `path` read-write, runs `edit` on the file, closes it.
inline void edit_file(const std::string& path, const std::function<void(hid_t)>& edit) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0) << path;
  edit(file);
  ASSERT_GE(H5Fclose(file), 0);
}

// A whole dataset read as `mem_type` (its elements converted by HDF5).
template <typename T>
std::vector<T> read_dataset(hid_t loc, const std::string& name, hid_t mem_type) {
  const hid_t dset = H5Dopen2(loc, name.c_str(), H5P_DEFAULT);
  EXPECT_GE(dset, 0) << name;
  const hid_t space = H5Dget_space(dset);
  std::vector<T> out(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
  H5Sclose(space);
  if (!out.empty()) {
    EXPECT_GE(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), 0);
  }
  H5Dclose(dset);
  return out;
}

// Replaces (or adds) a one-dimensional dataset with an unfiltered, contiguous one of the given
// type and values: readers must not depend on filters or chunking.
template <typename T>
void replace_dataset(hid_t file, const std::string& name, hid_t file_type, hid_t mem_type,
                     const std::vector<T>& values) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) {
    ASSERT_GE(H5Ldelete(file, name.c_str(), H5P_DEFAULT), 0);
  }
  hsize_t dims[1] = {values.size()};
  const hid_t space = H5Screate_simple(1, dims, nullptr);
  const hid_t dset =
      H5Dcreate2(file, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(dset, 0) << name;
  if (!values.empty()) {
    ASSERT_GE(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  }
  H5Dclose(dset);
  H5Sclose(space);
}

// The filter pipeline of a chunked dataset, in order.
inline std::vector<H5Z_filter_t> filters_of(hid_t dset) {
  const hid_t dcpl = H5Dget_create_plist(dset);
  EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED);
  std::vector<H5Z_filter_t> filters;
  for (int i = 0; i < H5Pget_nfilters(dcpl); ++i) {
    unsigned flags = 0;
    size_t nelmts = 0;
    unsigned cd_values[8];
    unsigned config = 0;
    filters.push_back(H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nelmts, cd_values, 0,
                                     nullptr, &config));
  }
  H5Pclose(dcpl);
  return filters;
}

// Flips the bits of `mask` in the middle of the first stored chunk of `dataset`, so that its
// Fletcher-32 checksum no longer matches.
inline void flip_bit_in_first_chunk(const std::string& path, const std::string& dataset,
                                    char mask = 0x10) {
  haddr_t address = 0;
  hsize_t size = 0;
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t dset = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  ASSERT_GE(dset, 0) << dataset;
  const hid_t space = H5Dget_space(dset);  // H5S_ALL is mishandled by H5Dget_chunk_info in 1.10
  ASSERT_GE(H5Dget_chunk_info(dset, space, 0, nullptr, nullptr, &address, &size), 0);
  H5Sclose(space);
  H5Dclose(dset);
  H5Fclose(file);
  ASSERT_GT(size, 8u);
  std::string bytes = read_bytes(path);
  ASSERT_LE(address + size, bytes.size());
  bytes[address + size / 2] ^= mask;
  write_bytes(path, bytes);
}

}  // namespace mcompress::testing
