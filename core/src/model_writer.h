#pragma once
// Writing a model into an open HDF5 file, in either container. save_model (model_file.cpp)
// checks the model, creates the temporary file and renames it into place.

#include <hdf5.h>

#include <string>

#include "mcompress/core/model.h"

namespace mcompress::model_file {

// The groups container (format v2): /tensors/<name> groups, /activations, /history, /recipe.
void write_groups_model(hid_t file, const Model& model, const std::string& path);
// The packed container (format v3, docs/format.md §9): root attributes, /manifest (JSON),
// /blob (the arrays), /history.
void write_packed_model(hid_t file, const Model& model, const std::string& path);

}  // namespace mcompress::model_file
