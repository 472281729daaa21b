// The groups container (format v2): the codebook encoding (docs/format.md §4.8), its raw
// layout, and every inconsistent codebook refused on save and on load.

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
using testing::filters_of;
using testing::flip_bit_in_first_chunk;
using testing::read_dataset;
using testing::replace_dataset;

// --- The codebook encoding (§4.8) ----------------------------------------------------------

// Reads a whole uint8 dataset, checked to be stored as §4.5 says.
std::vector<uint8_t> read_bytes_dataset(hid_t group, const char* name) {
  hid_t dset = H5Dopen2(group, name, H5P_DEFAULT);
  EXPECT_GE(dset, 0) << name;
  hid_t type = H5Dget_type(dset);
  EXPECT_TRUE(H5Tequal(type, H5T_STD_U8LE) > 0) << name;
  H5Tclose(type);
  EXPECT_EQ(filters_of(dset), kFilters) << name;
  H5Dclose(dset);
  return read_dataset<uint8_t>(group, name, H5T_NATIVE_UINT8);
}

// Code i of `bits` bits from the packed stream, most significant bit first (§4.8).
unsigned packed_code(const std::vector<uint8_t>& packed, int64_t i, int64_t bits) {
  unsigned code = 0;
  for (int64_t b = 0; b < bits; ++b) {
    const int64_t bit = i * bits + b;
    code = (code << 1) | ((packed[static_cast<size_t>(bit / 8)] >> (7 - bit % 8)) & 1u);
  }
  return code;
}

TEST_F(GroupsContainerTest, RawHdf5ReaderSeesCodebookLayout) {
  const Model model = codebook_mlp();
  const std::string path = dir.file("cb.h5");
  save_groups(model, path);
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  EXPECT_EQ(read_string_attr(file, "quant_mode"), "codebook");
  for (const auto& [name, bits, layout] :
       {std::tuple<std::string, int64_t, std::string>{"0.weight", 2, "sparse"},
        {"2.weight", 3, "dense"}}) {
    SCOPED_TRACE(name);
    const QuantizedTensor& q = model.quant.tensors.at(name);
    hid_t group = H5Gopen2(file, ("/tensors/" + name).c_str(), H5P_DEFAULT);
    ASSERT_GE(group, 0);
    EXPECT_EQ(read_string_attr(group, "encoding"), "codebook");
    EXPECT_EQ(read_string_attr(group, "layout"), layout);
    hid_t attr = H5Aopen(group, "bits", H5P_DEFAULT);
    hid_t attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I32LE) > 0);
    int32_t stored_bits = 0;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT32, &stored_bits), 0);
    EXPECT_EQ(stored_bits, bits);
    H5Tclose(attr_type);
    H5Aclose(attr);
    EXPECT_EQ(H5Lexists(group, "values", H5P_DEFAULT), 0);

    hid_t dset = H5Dopen2(group, "codebook", H5P_DEFAULT);
    hid_t type = H5Dget_type(dset);
    EXPECT_TRUE(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    H5Tclose(type);
    std::vector<float> book(static_cast<size_t>(q.codebook.numel()));
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, book.data()), 0);
    H5Dclose(dset);
    EXPECT_TRUE(at::tensor(book).equal(q.codebook));

    // The codes of the stored entries, packed: all of them (dense), or those whose shared
    // value is not the 0.0 of code 0, in row-major order (sparse).
    const at::Tensor codes = q.values.reshape({-1}).to(at::kLong);
    const at::Tensor stored = layout == "dense" ? codes : codes.masked_select(codes.ne(0));
    const std::vector<uint8_t> packed = read_bytes_dataset(group, "codes");
    ASSERT_EQ(static_cast<int64_t>(packed.size()), (stored.numel() * bits + 7) / 8);
    for (int64_t i = 0; i < stored.numel(); ++i) {
      ASSERT_EQ(packed_code(packed, i, bits), stored[i].item<int64_t>()) << i;
    }
    EXPECT_EQ(H5Lexists(group, "indices_delta", H5P_DEFAULT) > 0, layout == "sparse");
    H5Gclose(group);
  }
  EXPECT_EQ(H5Fclose(file), 0);

  const Model loaded = load_model(path);
  EXPECT_EQ(loaded.quant.mode, "codebook");
  for (const std::string name : {"0.weight", "2.weight"}) {
    const QuantizedTensor& q = loaded.quant.tensors.at(name);
    EXPECT_EQ(q.bits, model.quant.tensors.at(name).bits);
    EXPECT_TRUE(q.values.equal(model.quant.tensors.at(name).values)) << name;
    EXPECT_TRUE(q.codebook.equal(model.quant.tensors.at(name).codebook)) << name;
    EXPECT_TRUE(bit_identical(loaded.tensor(name), model.tensor(name))) << name;
  }
  EXPECT_TRUE(loaded.masks.at("0.weight").equal(model.masks.at("0.weight")));
  const auto summary = inspect_model_file(path);
  EXPECT_EQ(stored(summary, "0.weight").encoding, "codebook");
  EXPECT_EQ(stored(summary, "0.weight").nonzeros, model.masks.at("0.weight").sum().item<int64_t>());
  EXPECT_EQ(stored(summary, "2.weight").nonzeros, 64 * 300);
}

TEST_F(GroupsContainerTest, SavingRefusesAnInconsistentCodebook) {
  Model model = codebook_mlp();
  model.quant.tensors["2.weight"].bits = 9;
  ASSERT_THROWS_WITH(save_groups(model, dir.file("a.h5")), ModelError,
                     "tensor '2.weight' (codebook) has bits 9, expected 1 to 8");
  model = codebook_mlp();
  model.quant.tensors["2.weight"].codebook = at::zeros({3});
  ASSERT_THROWS_WITH(save_groups(model, dir.file("a.h5")), ModelError,
                     "tensor '2.weight' (codebook) has code 7 but only 3 shared values");
  model = codebook_mlp();
  model.quant.tensors["2.weight"].bits = 2;  // 8 shared values need 3 bits
  ASSERT_THROWS_WITH(save_groups(model, dir.file("a.h5")), ModelError,
                     "has 8 shared values, expected 1 to 4 (2^bits, bits 2)");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

class CodebookFileErrorTest : public ModelFileErrorTest {
 protected:
  CodebookFileErrorTest() { save_groups(codebook_mlp(), path); }
  void edit_group(const std::string& tensor, const std::function<void(hid_t)>& edit) {
    edit_file(path, [&](hid_t file) {
      hid_t group = H5Gopen2(file, ("/tensors/" + tensor).c_str(), H5P_DEFAULT);
      ASSERT_GE(group, 0);
      edit(group);
      H5Gclose(group);
    });
  }
  void expect_refused(const std::string& message) {
    ASSERT_THROWS_WITH(load_model(path), FormatError, message);
    ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, message);
  }
};

TEST_F(CodebookFileErrorTest, BitsOutOfRangeOrMissing) {
  edit_group("2.weight", [](hid_t group) {
    hid_t attr = H5Aopen(group, "bits", H5P_DEFAULT);
    const int32_t zero = 0;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT32, &zero), 0);
    H5Aclose(attr);
  });
  expect_refused("tensor '2.weight' (codebook) has bits 0, expected 1 to 8");
  edit_group("2.weight", [](hid_t group) { ASSERT_GE(H5Adelete(group, "bits"), 0); });
  expect_refused("tensor '2.weight' (codebook) has no 'bits' attribute");
}

TEST_F(CodebookFileErrorTest, CodesOfTheWrongLengthOrType) {
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codes", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                    std::vector<uint8_t>(100, 0));
  });
  expect_refused(
      "tensor '2.weight' (codebook) has a codes dataset of shape [100], expected [7200] "
      "(19200 codes of 3 bits, packed)");
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codes", H5T_STD_I16LE, H5T_NATIVE_INT16,
                    std::vector<int16_t>(7200, 0));
  });
  expect_refused("has codes that are not 8-bit unsigned integers (2-byte integer)");
}

TEST_F(CodebookFileErrorTest, CodeBeyondTheCodebookOrBadSharedValue) {
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codebook", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>{0.1f, 0.2f});
  });
  expect_refused("tensor '2.weight' (codebook) has code 7 but only 2 shared values");
  std::vector<float> book(8, 0.5f);
  book[3] = std::numeric_limits<float>::quiet_NaN();
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codebook", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, book);
  });
  expect_refused(
      "tensor '2.weight' (codebook) has shared value nan at index 3, expected finite values");
}

TEST_F(CodebookFileErrorTest, SparseCodebookWithoutZero) {
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/0.weight/codebook", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>{0.125f, -0.5f, 0.25f, 1.0f});
  });
  expect_refused("tensor '0.weight' (codebook, sparse) has no +0.0 among its shared values");
}

TEST_F(CodebookFileErrorTest, FlippedBitInCodesFailsChecksum) {
  flip_bit_in_first_chunk(path, "/tensors/0.weight/codes", 0x04);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight': cannot read its codes; the data is corrupt");
}

}  // namespace
}  // namespace mcompress
