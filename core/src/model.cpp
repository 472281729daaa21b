#include "mcompress/core/model.h"

#include <torch/torch.h>

#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"
#include "mcompress/core/graph_network.h"

namespace mcompress {

const QuantizedTensor* QuantState::find_int8(const std::string& name) const {
  const auto it = tensors.find(name);
  return it != tensors.end() && it->second.encoding == Encoding::kInt8 ? &it->second : nullptr;
}

const ActivationQParams* QuantState::find_activation(const std::string& key) const {
  const auto it = activations.find(key);
  return it == activations.end() ? nullptr : &it->second;
}

constexpr std::array<EnumName<Encoding>, 5> kEncodings = {{{Encoding::kFp32, "fp32"},
                                                           {Encoding::kFp16, "fp16"},
                                                           {Encoding::kBf16, "bf16"},
                                                           {Encoding::kInt8, "int8"},
                                                           {Encoding::kCodebook, "codebook"}}};

std::string to_string(Encoding e) { return enum_to_string(kEncodings, e); }
Encoding parse_encoding(const std::string& name) {
  return parse_enum<FormatError>(kEncodings, name, "encoding");
}

at::Tensor QuantizedTensor::dequantize() const {
  switch (encoding) {
    case Encoding::kFp32:
      return values.to(at::kFloat);
    case Encoding::kFp16:
    case Encoding::kBf16:
      return values.to(at::kFloat);
    case Encoding::kInt8: {
      auto q = values.to(at::kFloat);
      if (axis < 0) return (q - zero_point.to(at::kFloat)) * scale;
      std::vector<int64_t> shape(static_cast<size_t>(q.dim()), 1);
      shape[static_cast<size_t>(axis)] = scale.numel();
      return (q - zero_point.to(at::kFloat).reshape(shape)) * scale.reshape(shape);
    }
    case Encoding::kCodebook:
      return codebook.to(at::kFloat)
          .index_select(0, values.reshape({-1}).to(at::kLong))
          .reshape(values.sizes());
  }
  throw ModelError("unknown encoding");
}

namespace {

// The op schema's role names (op_schema.h, ParamSpec::role) as TensorRoles.
TensorRole tensor_role(const GraphParam& p) {
  static const std::map<std::string, TensorRole> roles = {
      {"weight", TensorRole::kWeight},
      {"bias", TensorRole::kBias},
      {"running_mean", TensorRole::kRunningMean},
      {"running_var", TensorRole::kRunningVar}};
  const auto it = roles.find(p.spec.role);
  if (it != roles.end()) return it->second;
  throw ModelError("node '" + p.node + "': parameter '" + p.name + "' has role '" + p.spec.role +
                   "', which no model tensor has (expected weight, bias, running_mean or "
                   "running_var)");
}

// A freshly built network's tensors, copied out of it.
std::map<std::string, at::Tensor> initial_tensors(const TrainableNetwork& net) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, value] : net.state()) tensors[name] = value.detach().clone();
  return tensors;
}

// Checks `tensors` against `infos`: each present, float32, of its shape, and nothing else.
void check_tensors(const std::vector<TensorInfo>& infos,
                   std::map<std::string, at::Tensor>& tensors) {
  for (const auto& info : infos) {
    auto it = tensors.find(info.name);
    MCOMPRESS_CHECK(it != tensors.end(), ModelError, "missing tensor '", info.name, "'");
    const auto& t = it->second;
    MCOMPRESS_CHECK(t.defined() && t.scalar_type() == at::kFloat, ModelError, "tensor '", info.name,
                    "' must be float32");
    MCOMPRESS_CHECK(t.sizes().vec() == info.shape, ModelError, "tensor '", info.name,
                    "' has shape ", shape_to_string(t.sizes().vec()), ", expected ",
                    shape_to_string(info.shape));
    it->second = t.contiguous();
  }
  MCOMPRESS_CHECK(tensors.size() == infos.size(), ModelError, "got ", tensors.size(),
                  " tensors but the architecture has ", infos.size());
}

}  // namespace

std::vector<TensorInfo> graph_tensor_infos(const Graph& graph) {
  std::map<std::string, int64_t> node_index;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    node_index[graph.nodes[i].name] = static_cast<int64_t>(i);
  }
  std::vector<TensorInfo> infos;
  for (const GraphParam& p : graph.parameters()) {
    infos.push_back({p.name, p.spec.shape, tensor_role(p), node_index.at(p.node)});
  }
  return infos;
}

Model::Model(std::optional<ArchSpec> spec, std::shared_ptr<const Graph> graph,
             std::vector<TensorInfo> infos, std::map<std::string, at::Tensor> tensors)
    : spec_(std::move(spec)),
      graph_(std::move(graph)),
      infos_(std::move(infos)),
      tensors_(std::move(tensors)) {}

const ArchSpec& Model::spec() const {
  MCOMPRESS_CHECK(spec_.has_value(), ModelError, "'", name().empty() ? "the model" : name(),
                  "' is a graph model, and this step supports only sequential (layer-chain) "
                  "models so far");
  return *spec_;
}

std::string Model::architecture_json() const {
  return spec_ ? spec_->to_json_text() : graph_->to_json_text();
}

std::vector<int64_t> Model::input_shape() const {
  if (spec_) return spec_->input_shape;
  MCOMPRESS_CHECK(!graph_->inputs.empty(), ModelError, "'", name(), "' has no input");
  const ValueInfo& input = graph_->inputs[0];
  std::vector<int64_t> shape;
  for (size_t d = 1; d < input.shape.size(); ++d) {
    MCOMPRESS_CHECK(input.shape[d].known(), ModelError, "'", name(), "': input '", input.name,
                    "' has the symbolic size '", input.shape[d].symbol, "' at axis ", d,
                    "; expected a known size for every axis but the batch");
    shape.push_back(input.shape[d].value);
  }
  return shape;
}

Model Model::initialize(const ArchSpec& spec, uint64_t seed) {
  // PyTorch's default initialisation of the same layers, drawn from `seed`.
  torch::manual_seed(seed);
  // GraphNetwork draws a sequential model's tensors in the order and from the generator
  // torch::nn's modules of the same layers do (bitwise the same, tests/core).
  Model model =
      from_tensors(spec, initial_tensors(*GraphNetwork(Graph::from_sequential(spec.resolved()))));
  model.seed = seed;
  return model;
}

Model Model::initialize(const Graph& graph, uint64_t seed) {
  torch::manual_seed(seed);
  Model model = from_tensors(graph, initial_tensors(*GraphNetwork(graph)));
  model.seed = seed;
  return model;
}

Model Model::from_tensors(const ArchSpec& spec, std::map<std::string, at::Tensor> tensors) {
  ArchSpec resolved = spec.resolved();
  auto infos = resolved.tensors();
  check_tensors(infos, tensors);
  auto graph = std::make_shared<const Graph>(Graph::from_sequential(resolved));
  return Model(std::move(resolved), std::move(graph), std::move(infos), std::move(tensors));
}

Model Model::from_tensors(const Graph& graph, std::map<std::string, at::Tensor> tensors) {
  auto infos = graph_tensor_infos(graph);  // validates the graph
  check_tensors(infos, tensors);
  return Model(std::nullopt, std::make_shared<const Graph>(graph), std::move(infos),
               std::move(tensors));
}

const at::Tensor& Model::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  MCOMPRESS_CHECK(it != tensors_.end(), ModelError, "the model has no tensor '", name, "'");
  return it->second;
}

at::Tensor& Model::tensor(const std::string& name) {
  auto it = tensors_.find(name);
  MCOMPRESS_CHECK(it != tensors_.end(), ModelError, "the model has no tensor '", name, "'");
  return it->second;
}

void Model::set_mask(const std::string& name, const at::Tensor& mask) {
  at::Tensor& t = tensor(name);
  MCOMPRESS_CHECK(mask.defined() && mask.sizes() == t.sizes(), ModelError, "mask for '", name,
                  "' must have the tensor's shape ", shape_to_string(t.sizes().vec()));
  const auto keep = mask.to(at::kBool).contiguous();
  t.masked_fill_(keep.logical_not(), 0.0f);
  masks[name] = keep;
}

Model Model::clone() const {
  std::map<std::string, at::Tensor> copies;
  for (const auto& [name, value] : tensors_) copies[name] = value.clone();
  Model copy(spec_, graph_, infos_, std::move(copies));
  copy.history = history;
  copy.quant = quant;
  for (const auto& [name, mask] : masks)
    copy.masks[name] =
        mask.clone();  // encodings are immutable once decided; sharing their tensors is fine
  copy.recipe = recipe;
  copy.seed = seed;
  return copy;
}

}  // namespace mcompress
