// The sparse layout (docs/format.md §4.6): every broken CSR in a groups-container file is
// refused, naming the tensor.

#include <ATen/ATen.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "groups_container_support.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/version.h"
#include "mcompress/core/zoo.h"
#include "model_fixtures.h"
#include "raw_hdf5.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::edit_file;
using testing::flip_bit_in_first_chunk;
using testing::read_dataset;
using testing::replace_dataset;

// --- Sparse layout: every broken CSR is refused, naming the tensor ---------------------------

const std::string kSparseWeight = "/tensors/0.weight";

class SparseFileErrorTest : public ModelFileErrorTest {
 protected:
  SparseFileErrorTest() {
    save_groups(sparse_mlp("fp32"), path);
    nnz = stored(inspect_model_file(path), "0.weight").nonzeros;
  }
  // Rewrites the row-delta column indices as absolute ones, as format version 1 stores them.
  void make_absolute() {
    edit_file(path, [&](hid_t file) {
      const std::vector<int64_t> indptr =
          read_dataset<int64_t>(file, kSparseWeight + "/indptr", H5T_NATIVE_INT64);
      std::vector<int64_t> columns =
          read_dataset<int64_t>(file, kSparseWeight + "/indices_delta", H5T_NATIVE_INT64);
      for (size_t r = 0; r + 1 < indptr.size(); ++r) {
        for (auto k = static_cast<size_t>(indptr[r]) + 1; k < static_cast<size_t>(indptr[r + 1]);
             ++k)
          columns[k] += columns[k - 1];
      }
      ASSERT_GE(H5Ldelete(file, (kSparseWeight + "/indices_delta").c_str(), H5P_DEFAULT), 0);
      replace_dataset(file, kSparseWeight + "/indices", H5T_STD_U16LE, H5T_NATIVE_INT64, columns);
    });
  }
  // Rewrites /tensors/0.weight/<member> (indptr, indices or indices_delta) after `change` edits
  // its values.
  void edit_ints(const std::string& member,
                 const std::function<void(std::vector<int64_t>&)>& change) {
    edit_file(path, [&](hid_t file) {
      const std::string name = kSparseWeight + "/" + member;
      std::vector<int64_t> values = read_dataset<int64_t>(file, name, H5T_NATIVE_INT64);
      change(values);
      replace_dataset(file, name, H5T_STD_I64LE, H5T_NATIVE_INT64, values);
    });
  }
  void expect_refused(const std::string& message) {
    ASSERT_THROWS_WITH(load_model(path), FormatError, "tensor '0.weight' (sparse) " + message);
    ASSERT_THROWS_WITH(inspect_model_file(path), FormatError,
                       "tensor '0.weight' (sparse) " + message);
  }
  int64_t nnz = 0;
};

TEST_F(SparseFileErrorTest, IndptrOfWrongLength) {
  edit_ints("indptr", [](std::vector<int64_t>& p) { p.pop_back(); });
  expect_refused("has an indptr of 300 entries, expected 301 (shape[0] + 1)");
}

TEST_F(SparseFileErrorTest, IndptrNotStartingAtZero) {
  edit_ints("indptr", [](std::vector<int64_t>& p) { p[0] = 1; });
  expect_refused("has indptr[0] = 1, expected 0");
}

TEST_F(SparseFileErrorTest, IndptrDecreasing) {
  int64_t row6 = 0;
  edit_ints("indptr", [&](std::vector<int64_t>& p) {
    row6 = p[6];
    p[5] = p[6] + 3;
  });
  expect_refused("has a decreasing indptr at row 5 (" + std::to_string(row6 + 3) + " then " +
                 std::to_string(row6) + "); it must be non-decreasing");
}

TEST_F(SparseFileErrorTest, IndptrNotEndingAtNnz) {
  edit_ints("indptr", [](std::vector<int64_t>& p) { p.back() -= 1; });
  expect_refused("has indptr ending at " + std::to_string(nnz - 1) + ", expected " +
                 std::to_string(nnz) + " (the number of stored values)");
}

TEST_F(SparseFileErrorTest, ColumnIndexOutOfRange) {
  int64_t last_of_row0 = 0;
  edit_file(path, [&](hid_t file) {
    last_of_row0 = read_dataset<int64_t>(file, kSparseWeight + "/indptr", H5T_NATIVE_INT64)[1] - 1;
  });
  ASSERT_GT(last_of_row0, 0);
  // Row-delta (version 2): the last gap of row 0 reaches past the last column, also when it is
  // so large that adding it would overflow.
  const auto last = static_cast<size_t>(last_of_row0);
  int64_t column_before = 0;
  edit_file(path, [&](hid_t file) {
    const std::vector<int64_t> gaps =
        read_dataset<int64_t>(file, kSparseWeight + "/indices_delta", H5T_NATIVE_INT64);
    for (size_t k = 0; k < last; ++k) column_before += gaps[k];
  });
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) { g[last] = 784 - column_before; });
  expect_refused("has column index " + std::to_string(column_before) + " + " +
                 std::to_string(784 - column_before) + " in row 0, expected 0 to 783");
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) { g[last] = INT64_MAX; });
  expect_refused("has column index " + std::to_string(column_before) +
                 " + 9223372036854775807 in row 0, expected 0 to 783");
  // Absolute (version 1).
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) { g[last] = 1; });
  make_absolute();
  edit_ints("indices", [&](std::vector<int64_t>& i) { i[last] = 784; });
  expect_refused("has column index 784 in row 0, expected 0 to 783");
}

TEST_F(SparseFileErrorTest, ColumnGapOfZero) {
  std::vector<int64_t> gaps;
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) {
    gaps = g;
    g[1] = 0;  // a duplicate entry
  });
  expect_refused("has column indices out of order in row 0 (gap 0 after column " +
                 std::to_string(gaps[0]) + "); each gap in indices_delta must be ≥ 1");
}

TEST_F(SparseFileErrorTest, BothIndexForms) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(
        file, kSparseWeight + "/indices", H5T_STD_U16LE, H5T_NATIVE_INT64,
        read_dataset<int64_t>(file, kSparseWeight + "/indices_delta", H5T_NATIVE_INT64));
  });
  expect_refused("has both 'indices' and 'indices_delta'; expected one of them");
}

TEST_F(SparseFileErrorTest, ColumnIndicesNotStrictlyIncreasing) {
  make_absolute();
  std::vector<int64_t> before;
  edit_ints("indices", [&](std::vector<int64_t>& i) {
    before = i;
    std::swap(i[0], i[1]);
  });
  expect_refused("has column indices out of order in row 0 (" + std::to_string(before[0]) +
                 " after " + std::to_string(before[1]) +
                 "); they must be strictly increasing within a row");
  edit_ints("indices", [&](std::vector<int64_t>& i) {
    i = before;
    i[1] = i[0];  // a duplicate entry
  });
  expect_refused("has column indices out of order in row 0");
}

TEST_F(SparseFileErrorTest, ValuesAndIndicesCountsDiffer) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, kSparseWeight + "/values", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(static_cast<size_t>(nnz - 1), 0.5f));
  });
  expect_refused("has " + std::to_string(nnz) + " indices but " + std::to_string(nnz - 1) +
                 " values; expected one column index per stored value");
}

TEST_F(SparseFileErrorTest, DensityInconsistentOrMissing) {
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, kSparseWeight.c_str(), H5P_DEFAULT);
    hid_t attr = H5Aopen(group, "density", H5P_DEFAULT);
    const double density = 0.5;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_DOUBLE, &density), 0);
    H5Aclose(attr);
    H5Gclose(group);
  });
  expect_refused("has density 0.5 but stores " + std::to_string(nnz) + " of 235200 entries");
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, kSparseWeight.c_str(), H5P_DEFAULT);
    ASSERT_GE(H5Adelete(group, "density"), 0);
    H5Gclose(group);
  });
  expect_refused("has no 'density' attribute");
}

TEST_F(SparseFileErrorTest, IndicesThatAreNotIntegers) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, kSparseWeight + "/indices_delta", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(static_cast<size_t>(nnz), 1.0f));
  });
  expect_refused("has an indices_delta dataset that is not integers (4-byte float)");
}

TEST_F(SparseFileErrorTest, MissingIndptr) {
  edit_file(path, [](hid_t file) {
    ASSERT_GE(H5Ldelete(file, (kSparseWeight + "/indptr").c_str(), H5P_DEFAULT), 0);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "/tensors/0.weight/indptr is missing");
}

TEST_F(SparseFileErrorTest, FlippedBitInIndicesFailsChecksum) {
  flip_bit_in_first_chunk(path, kSparseWeight + "/indices_delta", 0x10);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight': cannot read its indices_delta; the data is corrupt");
}

}  // namespace
}  // namespace mcompress
