#pragma once
// The documented limits on what a file may claim (docs/reliability.md, "Limits"). Every
// reader checks a claimed size against these and against the bytes actually present before
// it allocates, so a small hostile file cannot make mcompress allocate gigabytes, overflow an
// integer or recurse without bound. Each limit is far above any model or data set we know of.

#include <cstdint>
#include <string>
#include <vector>

namespace mcompress {

/// Any size field of a spec or graph: channels, features, kernel, stride, padding, pooled
/// size, input dimension, class count.
inline constexpr int64_t kMaxSizeField = int64_t{1} << 20;
/// Elements of one parameter tensor (2^30 fp32 values are 4 GiB; a 128k x 4096 embedding is 2^29).
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 30;
/// Elements of one example's activation at any point of a network.
inline constexpr int64_t kMaxActivationElements = int64_t{1} << 30;
/// Layers of a sequential spec.
inline constexpr int64_t kMaxLayers = 100000;
/// A model's fp32 tensors may be at most this many times its file's size plus kModelSizeSlack:
/// a 97%-sparse model with 2-bit codebooks decodes to ~130x its file.
inline constexpr int64_t kMaxModelExpansion = 1024;
inline constexpr int64_t kModelSizeSlack = int64_t{64} << 20;
/// Bytes of a model file's history (the provenance text of every stage applied).
inline constexpr int64_t kMaxHistoryBytes = int64_t{64} << 20;

/// The product of `dims`, or a thrown ModelError (naming `what`) when it overflows int64 or
/// exceeds `limit`.
int64_t checked_elements(const std::vector<int64_t>& dims, int64_t limit, const std::string& what);

}  // namespace mcompress
