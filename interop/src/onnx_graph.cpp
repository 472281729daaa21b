#include "onnx_graph.h"

#include <ATen/ATen.h>

#include "mcompress/core/error.h"

namespace mcompress::interop {
namespace {

int32_t onnx_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return onnx::TensorProto::FLOAT;
    case at::kHalf:
      return onnx::TensorProto::FLOAT16;
    case at::kBFloat16:
      return onnx::TensorProto::BFLOAT16;
    case at::kChar:
      return onnx::TensorProto::INT8;
    case at::kByte:
      return onnx::TensorProto::UINT8;
    case at::kInt:
      return onnx::TensorProto::INT32;
    case at::kLong:
      return onnx::TensorProto::INT64;
    default:
      break;
  }
  throw ModelError(std::string("ONNX export: no ONNX type for tensor type ") + at::toString(t));
}

void set_shape(onnx::ValueInfoProto* value, int32_t elem, const std::vector<int64_t>& dims,
               const std::string& batch_dim) {
  auto* tensor = value->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(elem);
  auto* shape = tensor->mutable_shape();
  shape->add_dim()->set_dim_param(batch_dim);
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

}  // namespace

OnnxAttr OnnxAttr::Int(std::string name, int64_t v) {
  OnnxAttr a;
  a.name = std::move(name);
  a.kind = Kind::kInt;
  a.i = v;
  return a;
}
OnnxAttr OnnxAttr::Ints(std::string name, std::vector<int64_t> v) {
  OnnxAttr a;
  a.name = std::move(name);
  a.kind = Kind::kInts;
  a.ints = std::move(v);
  return a;
}
OnnxAttr OnnxAttr::Float(std::string name, float v) {
  OnnxAttr a;
  a.name = std::move(name);
  a.kind = Kind::kFloat;
  a.f = v;
  return a;
}

std::string OnnxGraph::unique(const std::string& hint) {
  std::string name = hint;
  while (used_.count(name) != 0) name = hint + "_" + std::to_string(++counter_);
  used_.insert(name);
  return name;
}

std::string OnnxGraph::initializer(const std::string& hint, const at::Tensor& tensor) {
  const std::string name = unique(hint);
  const at::Tensor t = tensor.detach().cpu().contiguous();
  auto* init = graph_->add_initializer();
  init->set_name(name);
  init->set_data_type(onnx_type(t.scalar_type()));
  for (int64_t d : t.sizes()) init->add_dims(d);
  // raw_data is little-endian, as the host (x86-64, aarch64) stores the values.
  init->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.nbytes()));
  return name;
}

std::vector<std::string> OnnxGraph::node(const std::string& op,
                                         const std::vector<std::string>& inputs,
                                         const std::string& hint,
                                         const std::vector<OnnxAttr>& attrs, int outputs,
                                         const std::string& domain) {
  auto* n = graph_->add_node();
  n->set_op_type(op);
  n->set_name(unique(hint + "/" + op));
  if (!domain.empty()) n->set_domain(domain);
  for (const auto& in : inputs) n->add_input(in);
  std::vector<std::string> out;
  for (int i = 0; i < outputs; ++i) {
    out.push_back(unique(hint + "/" + op + (outputs > 1 ? "_" + std::to_string(i) : "")));
    n->add_output(out.back());
  }
  for (const auto& a : attrs) {
    auto* p = n->add_attribute();
    p->set_name(a.name);
    switch (a.kind) {
      case OnnxAttr::Kind::kInt:
        p->set_type(onnx::AttributeProto::INT);
        p->set_i(a.i);
        break;
      case OnnxAttr::Kind::kInts:
        p->set_type(onnx::AttributeProto::INTS);
        for (int64_t v : a.ints) p->add_ints(v);
        break;
      case OnnxAttr::Kind::kFloat:
        p->set_type(onnx::AttributeProto::FLOAT);
        p->set_f(a.f);
        break;
    }
  }
  return out;
}

std::string OnnxGraph::op(const std::string& op, const std::vector<std::string>& inputs,
                          const std::string& hint, const std::vector<OnnxAttr>& attrs) {
  return node(op, inputs, hint, attrs).front();
}

void OnnxGraph::named(const std::string& op, const std::vector<std::string>& inputs,
                      const std::string& output) {
  auto* n = graph_->add_node();
  n->set_op_type(op);
  n->set_name(unique(output + "/" + op));
  for (const auto& in : inputs) n->add_input(in);
  used_.insert(output);
  n->add_output(output);
}

void OnnxGraph::input(const std::string& name, int32_t elem, const std::vector<int64_t>& dims,
                      const std::string& batch_dim) {
  used_.insert(name);
  set_shape(graph_->add_input(), elem, dims, batch_dim);
  graph_->mutable_input()->rbegin()->set_name(name);
}

void OnnxGraph::output(const std::string& name, int32_t elem, const std::vector<int64_t>& dims,
                       const std::string& batch_dim) {
  set_shape(graph_->add_output(), elem, dims, batch_dim);
  graph_->mutable_output()->rbegin()->set_name(name);
}

}  // namespace mcompress::interop
