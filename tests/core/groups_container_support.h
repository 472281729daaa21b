#pragma once
// What the groups-container suites share (groups_container_*_test.cpp, model_file_error_test.cpp,
// sparse_file_error_test.cpp): saving with the groups container (format v2), raw HDF5 C API
// reads of what docs/format.md promises, and the fixtures.

#include <hdf5.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "mcompress/core/model_file.h"
#include "model_fixtures.h"
#include "test_support.h"

namespace mcompress {

// These suites pin down the groups container (format v2) dataset by dataset, so it saves with
// it; packed_model_file_test.cpp covers the packed container (v3, the default) and both
// containers' shared decoding runs in each.
inline void save_groups(const Model& model, const std::string& path, SaveOptions options = {}) {
  options.container = ModelContainer::kGroups;
  save_model(model, path, options);
}

// Silences HDF5's stderr dump for calls the test expects to fail.
struct QuietH5 {
  QuietH5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};

// Opens a saved file read-write with the raw C API, lets `edit` change it, and closes it.
inline void replace_string_attr(hid_t loc, const char* name, const std::string& value) {
  if (H5Aexists(loc, name) > 0) {
    ASSERT_GE(H5Adelete(loc, name), 0);
  }
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  const char* data = value.c_str();
  ASSERT_GE(H5Awrite(attr, type, &data), 0);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

inline std::string read_string_attr(hid_t loc, const char* name) {
  hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
  EXPECT_GE(attr, 0) << name;
  // As docs/format.md §2 documents the strings: fixed-length, null-terminated, UTF-8.
  hid_t type = H5Aget_type(attr);
  EXPECT_EQ(H5Tget_class(type), H5T_STRING) << name;
  EXPECT_EQ(H5Tis_variable_str(type), 0) << name;
  EXPECT_EQ(H5Tget_strpad(type), H5T_STR_NULLTERM) << name;
  EXPECT_EQ(H5Tget_cset(type), H5T_CSET_UTF8) << name;
  std::string buffer(H5Tget_size(type), '\0');
  EXPECT_GE(H5Aread(attr, type, buffer.data()), 0) << name;
  EXPECT_EQ(buffer.back(), '\0') << name;
  H5Tclose(type);
  H5Aclose(attr);
  return buffer.substr(0, buffer.size() - 1);
}

// --- Quantized models -----------------------------------------------------------------------

inline const StoredTensorInfo& stored(const ModelFileSummary& summary, const std::string& name) {
  for (const StoredTensorInfo& t : summary.tensors) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tensor " + name);
}

// The type of an HDF5 dataset, checked to be a float with the given bit fields.
inline void expect_float_fields(hid_t dset, size_t size, std::vector<size_t> fields, size_t ebias) {
  hid_t type = H5Dget_type(dset);
  EXPECT_EQ(H5Tget_class(type), H5T_FLOAT);
  EXPECT_EQ(H5Tget_size(type), size);
  EXPECT_EQ(H5Tget_precision(type), size * 8);
  EXPECT_EQ(H5Tget_order(type), H5T_ORDER_LE);
  std::vector<size_t> got(5);
  EXPECT_GE(H5Tget_fields(type, &got[0], &got[1], &got[2], &got[3], &got[4]), 0);
  EXPECT_EQ(got, fields);
  EXPECT_EQ(H5Tget_ebias(type), ebias);
  H5Tclose(type);
}

inline const std::vector<H5Z_filter_t> kFilters = {H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE,
                                                   H5Z_FILTER_FLETCHER32};

// Round trips and the raw layout of the groups container.
class GroupsContainerTest : public ::testing::Test {
 protected:
  testing::TempDir dir;
};

class ModelFileErrorTest : public ::testing::Test {
 protected:
  ModelFileErrorTest() { path = dir.file("m.h5"); }
  void save_tiny() { save_groups(tiny_model(), path); }
  testing::TempDir dir;
  std::string path;
  QuietH5 quiet;
};

}  // namespace mcompress
