// Distills a trained teacher into a smaller student from the zoo:
//   distill_model TEACHER.h5 STUDENT_ARCH DATA OUT.h5 [EPOCHS=2] [TRAIN_EXAMPLES]
// e.g. distill_model runs/zoo/lenet5.h5 lenet5-small /usr/share/datasets/fashion-mnist s.h5
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>

#include "mcompress/core/architecture.h"
#include "mcompress/core/dataset.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/distill/distill.h"

namespace mc = mcompress;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: distill_model TEACHER.h5 STUDENT_ARCH DATA OUT.h5 [EPOCHS=2] "
                 "[TRAIN_EXAMPLES]\n";
    return 2;
  }
  try {
    const mc::Model teacher = mc::load_model(argv[1]);
    mc::Model student = mc::initialize_model(mc::resolve_architecture(argv[2]), /*seed=*/0);
    mc::Dataset all = mc::load_dataset(argv[3], mc::Split::kTrain);
    if (argc > 6) all = all.slice(0, std::min<int64_t>(std::atoll(argv[6]), all.size()));
    auto [train, val] = mc::split_train_val(all, 0.1, /*seed=*/0);

    mc::distill::DistillOptions options;  // T = 1, alpha = 0.5 (docs/distillation.md)
    options.train.epochs = argc > 5 ? std::atoll(argv[5]) : 2;
    options.train.progress = false;
    mc::distill::DistillReport report =
        mc::distill::distill_model(student, teacher, options, train, val);
    student.history.push_back(report.to_json());
    mc::save_model(student, argv[4]);

    std::cout << std::fixed << std::setprecision(2) << "teacher " << report.teacher_arch << " ("
              << report.teacher_parameters << " parameters): val accuracy "
              << 100 * report.teacher_val_accuracy << "%\n"
              << "student " << report.student_arch << " (" << report.student_parameters
              << " parameters): val accuracy " << 100 * report.student_val_accuracy << "%\n"
              << "wrote " << argv[4] << "\n";
  } catch (const mc::Error& e) {
    std::cerr << "distill_model: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
