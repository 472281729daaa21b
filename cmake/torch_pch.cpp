// The translation unit that owns the build's one precompiled <torch/torch.h>
// (mcompress_use_torch_pch in cmake/mcompress_helpers.cmake); it compiles nothing of its own.
