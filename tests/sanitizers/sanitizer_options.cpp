// Default runtime options of the sanitizer builds (MCOMPRESS_SANITIZE, MCOMPRESS_FUZZ), compiled
// into every test, CLI and fuzz executable of those builds. Compiled in rather than exported by
// ctest because gtest_discover_tests also runs each test binary at build time, and apps tests
// start the CLI as a child: every run gets the same options, whoever starts it. Variables in
// the environment still win: ASAN_OPTIONS=detect_leaks=0 ctest ...
//
// halt_on_error / -fno-sanitize-recover: the first report fails the test, so a finding is a
// red test, not a log line nobody reads. The suppressions (tests/sanitizers/lsan.supp) cover
// third-party frames only; see that file for why each entry is there.

#ifndef MCOMPRESS_SANITIZER_DIR
#error "MCOMPRESS_SANITIZER_DIR must name tests/sanitizers"
#endif

extern "C" {

// Called by the runtimes before main; the attribute keeps them out of ASan's own checks.
__attribute__((visibility("default"), used)) const char* __asan_default_options() {
  return "detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:"
         "detect_stack_use_after_return=1:check_initialization_order=1:"
         "print_suppressions=0";
}

__attribute__((visibility("default"), used)) const char* __lsan_default_options() {
  return "print_suppressions=0:suppressions=" MCOMPRESS_SANITIZER_DIR "/lsan.supp";
}

__attribute__((visibility("default"), used)) const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:suppressions=" MCOMPRESS_SANITIZER_DIR "/ubsan.supp";
}

}  // extern "C"
