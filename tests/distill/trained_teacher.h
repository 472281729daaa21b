#pragma once
// Teachers for the distillation tests: zoo models trained briefly on the block images, built
// once per test binary.

#include <map>
#include <string>

#include "mcompress/core/model.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "test_support.h"

namespace mcompress::testing {

/// 320 block images (seed 1): the training set of every distillation test.
inline const Dataset& distill_train_data() {
  static const Dataset data = block_images(320, 1);
  return data;
}

/// 200 block images from another seed, for accuracy checks.
inline const Dataset& distill_val_data() {
  static const Dataset data = block_images(200, 2);
  return data;
}

/// TrainOptions of the tests: `epochs` epochs of Adam 3e-3 in batches of 32, seed 0, quiet.
inline TrainOptions quick_train_options(int64_t epochs) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.lr = 3e-3;
  o.progress = false;
  return o;
}

/// The zoo model `arch` trained for 3 epochs on distill_train_data().
inline const Model& trained_teacher(const std::string& arch) {
  static std::map<std::string, Model> teachers;
  auto it = teachers.find(arch);
  if (it == teachers.end()) {
    Model model = Model::initialize(zoo_spec(arch), 5);
    train_model(model, distill_train_data(), Dataset{}, quick_train_options(3));
    it = teachers.emplace(arch, std::move(model)).first;
  }
  return it->second;
}

}  // namespace mcompress::testing
