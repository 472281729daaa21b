#pragma once
// Checks that make an HDF5 file the only thing a reader reads, and its claimed sizes honest
// (docs/reliability.md, "Threats"): HDF5 would otherwise follow external links into other
// files, read a dataset's bytes from external raw files or other files' datasets (virtual
// datasets), and hand back gigabytes of fill value for a dataset that was declared but never
// written. Each check returns what is wrong ("" when nothing is), so that every reader can
// throw its own error type with its own context.

#include <hdf5.h>

#include <cstdint>
#include <string>

namespace mcompress::hdf5_guard {

/// A decoded dataset may be at most this many times the bytes it stores (zlib's deflate cannot
/// exceed 1032:1), plus kSizeSlack.
inline constexpr uint64_t kMaxCompressionRatio = 1100;
inline constexpr uint64_t kSizeSlack = uint64_t{1} << 20;

/// `name` in `loc` must be a hard link: soft links, external links (into other files) and
/// user-defined links are refused. "" when it is one or does not exist.
std::string link_problem(hid_t loc, const char* name);

/// The dataset's bytes must be in this file: no external raw storage, no virtual layout.
std::string storage_problem(hid_t dataset);

/// The dataset's declared size (elements x file type size) must be backed by what it stores:
/// all of it when unfiltered, at least 1/kMaxCompressionRatio of it when compressed.
std::string size_problem(hid_t dataset, uint64_t max_ratio = kMaxCompressionRatio);

/// storage_problem, then size_problem: what every reader checks before reading a dataset
/// (having reached it through link_problem).
std::string contents_problem(hid_t dataset, uint64_t max_ratio = kMaxCompressionRatio);

}  // namespace mcompress::hdf5_guard
