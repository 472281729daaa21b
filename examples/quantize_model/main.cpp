// Quantizes a trained model to int8 with calibrated activation ranges, the library way:
//   quantize_model MODEL.h5 DATA OUT.h5 [TRAIN_EXAMPLES]
// DATA is an IDX folder (e.g. /usr/share/datasets/fashion-mnist) or an HDF5 data set.
// Prints the fp32 and int8 test accuracy as the deployable runtime computes them.
#include <cstdlib>
#include <iostream>
#include <string>

#include "mcompress/core/dataset.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"

namespace mc = mcompress;

static double test_accuracy(const mc::Model& model, const mc::Dataset& test) {
  mc::runtime::Executor exec(model);  // picks int8 kernels for int8 layers where they are faster
  return mc::runtime::evaluate(exec, test).accuracy;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: quantize_model MODEL.h5 DATA OUT.h5 [TRAIN_EXAMPLES]\n";
    return 2;
  }
  try {
    mc::Model model = mc::load_model(argv[1]);
    mc::Dataset train = mc::load_dataset(argv[2], mc::Split::kTrain);
    mc::Dataset test = mc::load_dataset(argv[2], mc::Split::kTest);
    if (argc > 4) train = train.slice(0, std::min<int64_t>(std::atoll(argv[4]), train.size()));

    const double fp32 = test_accuracy(model, test);
    mc::quant::QuantizeOptions options;  // int8 static, per-channel weights, minmax observer
    options.mode = mc::quant::QuantMode::kInt8Static;
    options.calib_batches = 8;
    mc::quant::QuantizeReport report = mc::quant::quantize_model(model, options, train, {});
    model.history.push_back(report.to_json());
    mc::save_model(model, argv[3]);

    std::cout << "quantized " << report.tensors.size() << " tensors (" << report.mode
              << ", observer " << report.observer << ")\n"
              << "test accuracy: fp32 " << 100 * fp32 << "%, int8 "
              << 100 * test_accuracy(model, test) << "%\n"
              << "wrote " << argv[3] << "\n";
  } catch (const mc::Error& e) {  // every library error: one line naming the culprit
    std::cerr << "quantize_model: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
