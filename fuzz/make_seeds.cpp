// Writes the seed corpora of the fuzz targets into <dir>/{fuzz_model_file,fuzz_idx,fuzz_recipe}.
// Small valid inputs only: libFuzzer mutates from them, so every branch of a valid parse is
// reachable in a few hundred runs. Usage: make_fuzz_seeds fuzz/corpus

#include <hdf5.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/graph.h"
#include "mcompress/core/model.h"
#include "mcompress/core/model_file.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

// Rewrites a packed file's /manifest and /blob as plain contiguous datasets (no deflate, no
// checksum; the reader does not depend on filters), so that the fuzzer's byte mutations reach
// the manifest's JSON and the arrays' own codecs instead of failing a checksum.
void unfilter_packed(const fs::path& path) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  for (const char* name : {"manifest", "blob"}) {
    const hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    const hid_t space = H5Dget_space(dset);
    std::vector<uint8_t> bytes(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
    H5Dread(dset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    H5Dclose(dset);
    H5Ldelete(file, name, H5P_DEFAULT);
    const hid_t out =
        H5Dcreate2(file, name, H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(out, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    H5Dclose(out);
    H5Sclose(space);
  }
  H5Fclose(file);
}

void write(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

void put_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes gzip(const Bytes& in) {
  uLongf size = compressBound(static_cast<uLong>(in.size())) + 32;
  Bytes out(size);
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // 15 + 16: gzip wrapper
  zs.next_in = const_cast<Bytes::value_type*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

/// fuzz_idx input: 4-byte little-endian image-file length, image file, label file.
Bytes idx_pair(const Bytes& images, const Bytes& labels) {
  Bytes out;
  const uint32_t n = static_cast<uint32_t>(images.size());
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<uint8_t>(n >> shift));
  out.insert(out.end(), images.begin(), images.end());
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// A 3-class convnet on 1x4x4 inputs: every layer kind the loader checks, ~200 parameters.
constexpr const char* kTinySpec = R"({"name":"tiny","input_shape":[1,4,4],"num_classes":3,
  "mean":[0.5],"std":[0.25],"layers":[
    {"type":"conv2d","out_channels":2,"kernel_size":3,"padding":1},
    {"type":"batchnorm2d"},{"type":"relu"},{"type":"flatten"},
    {"type":"linear","out_features":3}]})";

constexpr const char* kMlpSpec = R"({"name":"mlp","input_shape":[4],"num_classes":2,
  "layers":[{"type":"linear","out_features":3},{"type":"relu"},
    {"type":"linear","out_features":2}]})";

// A 3-class residual graph on 1x4x4 inputs (format v4): a skip connection, a renamed
// parameter and the preprocessing, ~100 parameters.
constexpr const char* kTinyGraph = R"({"format":"mcompress-graph","version":1,"name":"tiny-graph",
  "inputs":[{"name":"x","dtype":"float32","shape":["batch",1,4,4]}],
  "nodes":[
    {"name":"conv1","op":"Conv","inputs":["x"],"outputs":["c1"],
     "attrs":{"out_channels":2,"kernel_shape":[3,3],"pads":[1,1,1,1],"bias":0}},
    {"name":"bn1","op":"BatchNormalization","inputs":["c1"],"outputs":["b1"]},
    {"name":"relu1","op":"Relu","inputs":["b1"],"outputs":["r1"]},
    {"name":"conv2","op":"Conv","inputs":["r1"],"outputs":["c2"],
     "attrs":{"out_channels":2,"kernel_shape":[3,3],"pads":[1,1,1,1],"group":2},
     "params":{"weight":"block.conv.weight"}},
    {"name":"add","op":"Add","inputs":["r1","c2"],"outputs":["s"]},
    {"name":"pool","op":"GlobalAveragePool","inputs":["s"],"outputs":["p"]},
    {"name":"flat","op":"Flatten","inputs":["p"],"outputs":["f"]},
    {"name":"fc","op":"Gemm","inputs":["f"],"outputs":["logits"],"attrs":{"out_features":3}}],
  "outputs":["logits"],"preprocess":{"kind":"normalize","mean":[0.5],"std":[0.25]},
  "task":{"kind":"classification","num_classes":3}})";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  for (const char* t : {"fuzz_model_file", "fuzz_idx", "fuzz_recipe"}) {
    fs::create_directories(root / t);
  }

  // Each model file in both containers: packed (format v3, the default) and groups (v2).
  const auto save_both = [&](const mcompress::Model& model, const std::string& stem) {
    mcompress::SaveOptions options;
    options.overwrite = true;
    mcompress::save_model(model, (root / "fuzz_model_file" / (stem + ".h5")).string(), options);
    options.container = mcompress::ModelContainer::kGroups;
    mcompress::save_model(model, (root / "fuzz_model_file" / (stem + "_groups.h5")).string(),
                          options);
  };

  // Model files: a dense convnet with history and recipe, and an MLP whose mostly-zero
  // weight is stored sparse (CSR) and marked pruned.
  mcompress::Model tiny =
      mcompress::Model::initialize(mcompress::ArchSpec::from_json_text(kTinySpec), 7);
  tiny.history = {R"({"stage":"train","metrics":{"accuracy":0.5}})"};
  tiny.recipe = "model: tiny\nstages: []\n";
  save_both(tiny, "tiny_dense");
  mcompress::Model mlp =
      mcompress::Model::initialize(mcompress::ArchSpec::from_json_text(kMlpSpec), 7);
  at::Tensor& w = mlp.tensor("0.weight");
  at::Tensor mask = at::zeros_like(w, at::kBool);
  mask[0][0] = true;
  w.mul_(mask);
  mlp.masks["0.weight"] = mask;
  save_both(mlp, "mlp_sparse");
  // The same MLP with its pruned weight as a 2-bit codebook (sparse: code 0 is 0.0) and its
  // second weight as a 3-bit one (dense, packed codes).
  mcompress::QuantizedTensor sparse_book;
  sparse_book.encoding = mcompress::Encoding::kCodebook;
  sparse_book.bits = 2;
  sparse_book.codebook = at::tensor({0.0f, -0.5f, 0.25f, 1.0f});
  sparse_book.values = mask.to(at::kByte) * 3;
  const at::Tensor& w2 = mlp.tensor("2.weight");
  mcompress::QuantizedTensor dense_book;
  dense_book.encoding = mcompress::Encoding::kCodebook;
  dense_book.bits = 3;
  dense_book.codebook = at::linspace(-0.5, 0.5, 5).to(at::kFloat);
  dense_book.values =
      at::arange(w2.numel(), at::kLong).remainder(5).reshape(w2.sizes()).to(at::kByte);
  mlp.quant.mode = "codebook";
  mlp.quant.tensors["0.weight"] = sparse_book;
  mlp.quant.tensors["2.weight"] = dense_book;
  for (const auto& [name, q] : mlp.quant.tensors) mlp.tensor(name) = q.dequantize().contiguous();
  save_both(mlp, "mlp_codebook");
  // The codebook MLP (sparse and dense codebooks, CSR arrays) again with its manifest and blob
  // unfiltered (see unfilter_packed).
  const fs::path plain = root / "fuzz_model_file" / "mlp_codebook_plain.h5";
  fs::copy_file(root / "fuzz_model_file" / "mlp_codebook.h5", plain,
                fs::copy_options::overwrite_existing);
  unfilter_packed(plain);

  // A graph model (format v4: its arch is the graph document), packed, and unfiltered so that
  // mutations reach the graph document's JSON. The groups container refuses graph models.
  mcompress::Model graph =
      mcompress::Model::initialize(mcompress::Graph::from_json_text(kTinyGraph), 7);
  graph.history = {R"({"stage":"train","metrics":{"accuracy":0.5}})"};
  mcompress::SaveOptions graph_options;
  graph_options.overwrite = true;
  const fs::path graph_file = root / "fuzz_model_file" / "tiny_graph.h5";
  mcompress::save_model(graph, graph_file.string(), graph_options);
  const fs::path graph_plain = root / "fuzz_model_file" / "tiny_graph_plain.h5";
  fs::copy_file(graph_file, graph_plain, fs::copy_options::overwrite_existing);
  unfilter_packed(graph_plain);

  // IDX: two 3x3 images with their labels, plain and gzipped.
  Bytes images, labels;
  put_be32(images, 0x00000803);
  put_be32(images, 2);
  put_be32(images, 3);
  put_be32(images, 3);
  for (int i = 0; i < 18; ++i) images.push_back(static_cast<uint8_t>(i * 14));
  put_be32(labels, 0x00000801);
  put_be32(labels, 2);
  labels.push_back(1);
  labels.push_back(0);
  write(root / "fuzz_idx" / "plain", idx_pair(images, labels));
  write(root / "fuzz_idx" / "gzip", idx_pair(gzip(images), gzip(labels)));

  // Recipes: every section and every built-in stage with its main options.
  const std::vector<std::pair<std::string, std::string>> recipes = {
      {"full.yaml",
       "model: runs/convnet.h5\ndata: {val_fraction: 0.2, calib_batches: 4}\nseed: 7\n"
       "stages:\n  - prune: {target: 0.5}\n  - quantize: {mode: int8-static, observer: entropy}\n"
       "guard: {max_accuracy_drop: 1.0}\noutput: runs/out.h5\n"},
      {"flow.yaml", "model: m.h5\nstages: [quantize: ]\noutput: o.h5\n"},
      {"set.yaml",
       "#set stages[0].prune.target=0.95\nmodel: m.h5\nstages:\n  - prune: {target: 0.5}\n"
       "output: o.h5\n"},
      {"fp16.yaml", "model: m.h5\nstages:\n  - quantize: {mode: fp16}\noutput: o.h5\n"},
      {"codebook.yaml",
       "model: m.h5\nstages:\n  - prune: {target: 0.9}\n  - quantize: {mode: codebook, bits: 3, "
       "epochs: 0}\noutput: o.h5\n"},
      // The alias expansion bound and the one-document rule (docs/reliability.md, "Threats").
      {"aliases.yaml",
       "a0: &a0 [x, x, x]\na1: &a1 [*a0, *a0, *a0]\nmodel: m.h5\nstages:\n"
       "  - quantize: {mode: int8-static, observer: *a1}\noutput: o.h5\n"},
      {"two_documents.yaml", "model: m.h5\nstages: [quantize: ]\noutput: o.h5\n---\nseed: 1\n"},
  };
  for (const auto& [name, text] : recipes) {
    write(root / "fuzz_recipe" / name, Bytes(text.begin(), text.end()));
  }
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
