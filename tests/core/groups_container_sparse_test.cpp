// The groups container (format v2): sparse (CSR) tensors and pruning masks, round trips and
// the raw layout (docs/format.md §4.6, §4.7).

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
using testing::read_bytes;
using testing::replace_dataset;
using testing::TempDir;

// --- Sparse tensors and pruning masks ---------------------------------------------------------

class GroupsContainerSparseRoundTripTest : public ::testing::TestWithParam<std::string> {
 protected:
  TempDir dir;
};

TEST_P(GroupsContainerSparseRoundTripTest, IsBitIdenticalAndDeterministic) {
  Model model = sparse_mlp(GetParam());
  if (model.quant.tensors.count("0.weight") != 0 &&
      model.quant.tensors["0.weight"].encoding != Encoding::kInt8) {
    // A pruned entry holding -0.0 is stored (only +0.0 is implicit) and keeps its sign.
    QuantizedTensor& q = model.quant.tensors["0.weight"];
    const int64_t pruned =
        model.masks["0.weight"].reshape({-1}).logical_not().nonzero()[0].item<int64_t>();
    q.values.view({-1})[pruned] = -0.0;
    model.tensor("0.weight") = q.dequantize().contiguous();
  }
  const std::string path = dir.file("sparse.h5");
  save_groups(model, path);
  const StoredTensorInfo info = stored(inspect_model_file(path), "0.weight");
  EXPECT_EQ(info.layout, "sparse");
  // Omitted entries and stored zeros (the -0.0, an int8 code at its zero point) are not counted.
  EXPECT_EQ(info.nonzeros, model.tensor("0.weight").ne(0).sum().item<int64_t>());
  Model loaded = load_model(path);

  for (const TensorInfo& info : model.tensor_infos()) {
    EXPECT_TRUE(bit_identical(loaded.tensor(info.name), model.tensor(info.name))) << info.name;
  }
  ASSERT_EQ(loaded.quant.tensors.size(), model.quant.tensors.size());
  for (const auto& [name, want] : model.quant.tensors) {
    const QuantizedTensor& got = loaded.quant.tensors.at(name);
    EXPECT_EQ(got.encoding, want.encoding);
    EXPECT_TRUE(bit_identical(got.values, want.values)) << name;
    if (want.encoding == Encoding::kInt8) {
      EXPECT_TRUE(bit_identical(got.scale, want.scale));
      EXPECT_TRUE(bit_identical(got.zero_point, want.zero_point));
      EXPECT_EQ(got.axis, want.axis);
    }
  }
  // The mask comes back as the non-zero pattern: the pruning mask, less any kept weight whose
  // stored value is 0 (an int8 code rounded to the zero point).
  ASSERT_EQ(loaded.masks.count("0.weight"), 1u);
  EXPECT_TRUE(loaded.masks["0.weight"].equal(
      model.masks["0.weight"].logical_and(model.tensor("0.weight").ne(0))));
  if (GetParam() == "fp32") {
    EXPECT_TRUE(loaded.masks["0.weight"].equal(model.masks["0.weight"]));
  }

  // Same model, same bytes, also after a load/save cycle.
  save_groups(model.clone(), dir.file("b.h5"));
  save_groups(loaded, dir.file("c.h5"));
  EXPECT_TRUE(read_bytes(path) == read_bytes(dir.file("b.h5")));
  EXPECT_TRUE(read_bytes(path) == read_bytes(dir.file("c.h5")));
}

INSTANTIATE_TEST_SUITE_P(Encodings, GroupsContainerSparseRoundTripTest,
                         ::testing::Values("fp32", "fp16", "bf16", "int8", "int8-affine"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& c : name) c = std::isalnum(c) ? c : '_';
                           return name;
                         });

// A [300, 784] fp16 weight with its first `nnz` entries (row-major) non-zero.
Model fp16_weight_with_nonzeros(int64_t nnz) {
  Model model = mlp_model();
  at::Tensor w = (at::rand({300, 784}) + 0.5).reshape({-1});  // no zeros
  w.slice(0, nnz).zero_();
  model.quant.mode = "fp16";
  model.quant.tensors["0.weight"] = half_precision(w.reshape({300, 784}), Encoding::kFp16);
  model.tensor("0.weight") = model.quant.tensors["0.weight"].dequantize().contiguous();
  return model;
}

TEST_F(GroupsContainerTest, SparseOnlyWhenStrictlySmallerThanDense) {
  // fp16 [300, 784]: dense 470400 bytes; sparse nnz·(2 + 2) + 301·4 (uint32 indptr above
  // 65535 entries) = 470400 exactly at nnz = 117299.
  save_groups(fp16_weight_with_nonzeros(117299), dir.file("equal.h5"));
  save_groups(fp16_weight_with_nonzeros(117298), dir.file("smaller.h5"));
  EXPECT_EQ(stored(inspect_model_file(dir.file("equal.h5")), "0.weight").layout, "dense");
  EXPECT_EQ(stored(inspect_model_file(dir.file("smaller.h5")), "0.weight").layout, "sparse");
  EXPECT_EQ(stored(inspect_model_file(dir.file("smaller.h5")), "0.weight").nonzeros, 117298);

  // The thresholds differ per encoding: fp32 goes sparse below 2/3 density, int8 below 1/3.
  for (const auto& [encoding, sparsity, layout] :
       {std::tuple<std::string, double, std::string>{"fp32", 0.3, "dense"},
        {"fp32", 0.4, "sparse"},
        {"int8", 0.6, "dense"},
        {"int8", 0.7, "sparse"}}) {
    SCOPED_TRACE(encoding + " at sparsity " + std::to_string(sparsity));
    Model model = mlp_model();
    prune_rows(model, "0.weight", sparsity);
    if (encoding == "int8") {
      model.quant.mode = "int8-dynamic";
      model.quant.tensors["0.weight"] = int8_per_channel(model.tensor("0.weight"));
      model.tensor("0.weight") = model.quant.tensors["0.weight"].dequantize().contiguous();
    }
    const std::string path = dir.file(encoding + std::to_string(sparsity) + ".h5");
    save_groups(model, path);
    EXPECT_EQ(stored(inspect_model_file(path), "0.weight").layout, layout);
    EXPECT_TRUE(bit_identical(load_model(path).tensor("0.weight"), model.tensor("0.weight")));
  }
}

TEST_F(GroupsContainerTest, MasksRoundTripAsTheNonZeroPattern) {
  Model model = mlp_model();
  prune_rows(model, "0.weight", 0.95);  // stored sparse
  prune_rows(model, "2.weight", 0.2);   // pruned, but stored dense
  const std::string path = dir.file("pruned.h5");
  save_groups(model, path);
  const ModelFileSummary summary = inspect_model_file(path);
  EXPECT_EQ(stored(summary, "0.weight").layout, "sparse");
  EXPECT_EQ(stored(summary, "2.weight").layout, "dense");

  Model loaded = load_model(path);
  ASSERT_EQ(loaded.masks.size(), 2u);  // only the tensors that were pruned
  for (const char* name : {"0.weight", "2.weight"}) {
    EXPECT_EQ(loaded.masks[name].scalar_type(), at::kBool) << name;
    EXPECT_TRUE(loaded.masks[name].equal(model.masks[name])) << name;
  }
  // An unpruned model has no masks.
  save_groups(mlp_model(), dir.file("plain.h5"));
  EXPECT_TRUE(load_model(dir.file("plain.h5")).masks.empty());
}

TEST_F(GroupsContainerTest, SparseFileIsMuchSmallerThanDense) {
  Model dense = mlp_model();
  Model pruned = mlp_model();
  prune_rows(pruned, "0.weight", 0.95);
  save_groups(dense, dir.file("dense.h5"));
  save_groups(pruned, dir.file("pruned.h5"));
  const StoredTensorInfo d = stored(inspect_model_file(dir.file("dense.h5")), "0.weight");
  const StoredTensorInfo s = stored(inspect_model_file(dir.file("pruned.h5")), "0.weight");
  EXPECT_EQ(s.layout, "sparse");
  EXPECT_EQ(s.nonzeros, pruned.tensor("0.weight").ne(0).sum().item<int64_t>());
  EXPECT_NEAR(static_cast<double>(s.nonzeros) / static_cast<double>(s.parameters), 0.05, 0.002);
  // 95% zeros: CSR holds 6 bytes per kept weight instead of 4 per weight, ~13x less.
  EXPECT_LT(s.bytes_on_disk * 10, d.bytes_on_disk) << s.bytes_on_disk << " vs " << d.bytes_on_disk;
  EXPECT_LT(std::filesystem::file_size(dir.file("pruned.h5")) * 3,
            std::filesystem::file_size(dir.file("dense.h5")));
}

// Pruning and quantization compose on disk: the zoo mlp with 95% of each weight row pruned and
// int8 weights is ~24x smaller than its fp32 file (about 13 KB of it HDF5 metadata and the
// vlen-string heap; the column indices are the largest dataset).
TEST_F(GroupsContainerTest, PrunedInt8MlpFileIsOverTwentyTimesSmaller) {
  Model model = Model::initialize(zoo_spec("mlp"), 0);
  save_groups(model, dir.file("fp32.h5"));
  model.quant.mode = "int8-dynamic";
  for (const char* name : {"1.weight", "3.weight", "5.weight"}) {
    prune_rows(model, name, 0.95);
    model.quant.tensors[name] = int8_per_channel(model.tensor(name));
    model.tensor(name) = model.quant.tensors[name].dequantize().contiguous();
  }
  save_groups(model, dir.file("pruned-int8.h5"));
  const double ratio = static_cast<double>(std::filesystem::file_size(dir.file("fp32.h5"))) /
                       static_cast<double>(std::filesystem::file_size(dir.file("pruned-int8.h5")));
  EXPECT_GT(ratio, 20.0);
  for (const StoredTensorInfo& t : inspect_model_file(dir.file("pruned-int8.h5")).tensors) {
    if (t.name.find("weight") != std::string::npos) {
      EXPECT_EQ(t.layout, "sparse") << t.name;
    }
  }
  Model loaded = load_model(dir.file("pruned-int8.h5"));
  EXPECT_EQ(loaded.masks.size(), 3u);
  EXPECT_TRUE(bit_identical(loaded.tensor("1.weight"), model.tensor("1.weight")));
}

// The sparse layout as another tool sees it, from docs/format.md alone.
TEST_F(GroupsContainerTest, RawHdf5ReaderSeesSparseLayout) {
  Model model = sparse_mlp("int8");
  prune_rows(model, "2.weight", 0.9);  // stays fp32
  const std::string path = dir.file("s.h5");
  save_groups(model, path);
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);

  for (const auto& [name, encoding, value_type, columns] :
       {std::tuple<std::string, std::string, hid_t, int64_t>{"0.weight", "int8", H5T_STD_I8LE, 784},
        {"2.weight", "fp32", H5T_IEEE_F32LE, 300}}) {
    SCOPED_TRACE(name);
    const at::Tensor dense =
        encoding == "int8" ? model.quant.tensors[name].values.to(at::kFloat) : model.tensor(name);
    const int64_t rows = dense.size(0);
    const int64_t nnz = dense.ne(0).sum().item<int64_t>();  // int8 symmetric: zero point 0
    hid_t group = H5Gopen2(file, ("/tensors/" + name).c_str(), H5P_DEFAULT);
    ASSERT_GE(group, 0);
    EXPECT_EQ(read_string_attr(group, "encoding"), encoding);
    EXPECT_EQ(read_string_attr(group, "layout"), "sparse");
    hid_t attr = H5Aopen(group, "density", H5P_DEFAULT);
    hid_t attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_IEEE_F64LE) > 0);
    double density = 0;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_DOUBLE, &density), 0);
    EXPECT_DOUBLE_EQ(density, static_cast<double>(nnz) / static_cast<double>(dense.numel()));
    H5Tclose(attr_type);
    H5Aclose(attr);
    attr = H5Aopen(group, "pruned", H5P_DEFAULT);
    attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I8LE) > 0);
    int8_t pruned = 0;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT8, &pruned), 0);
    EXPECT_EQ(pruned, 1);
    H5Tclose(attr_type);
    H5Aclose(attr);

    // Types: values in the encoding; indptr in the smallest unsigned type that holds nnz, the
    // column gaps in the smallest that holds the largest gap (checked below).
    const hid_t indptr_type = nnz <= 0xFF     ? H5T_STD_U8LE
                              : nnz <= 0xFFFF ? H5T_STD_U16LE
                                              : H5T_STD_U32LE;
    std::vector<int64_t> indptr, indices;
    hid_t gap_type = -1;
    EXPECT_EQ(H5Lexists(group, "indices", H5P_DEFAULT), 0);  // version 1's absolute form
    for (const auto& [member, type, length, out] :
         {std::tuple<const char*, hid_t, int64_t, std::vector<int64_t>*>{"indptr", indptr_type,
                                                                         rows + 1, &indptr},
          {"indices_delta", -1, nnz, &indices},
          {"values", value_type, nnz, nullptr}}) {
      hid_t dset = H5Dopen2(group, member, H5P_DEFAULT);
      ASSERT_GE(dset, 0) << member;
      hid_t dtype = H5Dget_type(dset);
      if (type >= 0) {
        EXPECT_TRUE(H5Tequal(dtype, type) > 0) << member;
      } else {
        gap_type = H5Tcopy(dtype);
      }
      H5Tclose(dtype);
      hid_t space = H5Dget_space(dset);
      hsize_t dims[2] = {};
      EXPECT_EQ(H5Sget_simple_extent_dims(space, dims, nullptr), 1) << member;
      EXPECT_EQ(static_cast<int64_t>(dims[0]), length) << member;
      H5Sclose(space);
      EXPECT_EQ(filters_of(dset), kFilters) << member;
      if (out != nullptr) {
        out->resize(static_cast<size_t>(length));
        ASSERT_GE(H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data()), 0);
      }
      H5Dclose(dset);
    }
    // Row-delta: a row's first entry is its column, each later one the step from the previous.
    const int64_t max_gap = *std::max_element(indices.begin(), indices.end());
    EXPECT_TRUE(H5Tequal(gap_type, max_gap <= 0xFF ? H5T_STD_U8LE : H5T_STD_U16LE) > 0) << max_gap;
    H5Tclose(gap_type);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = indptr[static_cast<size_t>(r)] + 1; k < indptr[static_cast<size_t>(r) + 1];
           ++k) {
        EXPECT_GE(indices[static_cast<size_t>(k)], 1);
        indices[static_cast<size_t>(k)] += indices[static_cast<size_t>(k) - 1];
      }
    }
    // Rebuild the dense values from CSR: they are the tensor's, in row-major order.
    std::vector<float> values(static_cast<size_t>(nnz));
    hid_t dset = H5Dopen2(group, "values", H5P_DEFAULT);
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dset);
    at::Tensor rebuilt = at::zeros({rows, columns});
    auto cell = rebuilt.accessor<float, 2>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = indptr[static_cast<size_t>(r)]; k < indptr[static_cast<size_t>(r) + 1];
           ++k) {
        cell[r][indices[static_cast<size_t>(k)]] = values[static_cast<size_t>(k)];
      }
    }
    EXPECT_TRUE(bit_identical(rebuilt, dense.contiguous()));
    EXPECT_EQ(H5Lexists(group, "scale", H5P_DEFAULT) > 0, encoding == "int8");
    H5Gclose(group);
  }
  // An unpruned tensor has no 'pruned' attribute.
  hid_t group = H5Gopen2(file, "/tensors/4.weight", H5P_DEFAULT);
  EXPECT_EQ(H5Aexists(group, "pruned"), 0);
  H5Gclose(group);
  EXPECT_EQ(H5Fclose(file), 0);
}

TEST_F(GroupsContainerTest, SparseReaderAcceptsAnyIntegerType) {
  Model model = sparse_mlp("fp32");
  const std::string path = dir.file("s.h5");
  save_groups(model, path);
  edit_file(path, [](hid_t file) {
    // Signed 32- and 64-bit instead of the uint16 mcompress writes.
    for (const auto& [member, type] :
         {std::pair<std::string, hid_t>{"indices_delta", H5T_STD_I32LE},
          {"indptr", H5T_STD_I64BE}}) {
      const std::string name = "/tensors/0.weight/" + member;
      hid_t dset = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
      hid_t space = H5Dget_space(dset);
      std::vector<int64_t> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
      ASSERT_GE(H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
      H5Sclose(space);
      H5Dclose(dset);
      replace_dataset(file, name, type, H5T_NATIVE_INT64, values);
    }
  });
  Model loaded = load_model(path);
  EXPECT_TRUE(bit_identical(loaded.tensor("0.weight"), model.tensor("0.weight")));
  EXPECT_TRUE(loaded.masks.at("0.weight").equal(model.masks.at("0.weight")));
}

}  // namespace
}  // namespace mcompress
