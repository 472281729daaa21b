# Sourced by the scripts that configure a build folder: Ninja when it is installed (setup.sh
# installs ninja-build). It compiles the objects of a library while the libraries it depends
# on still link, which make's per-target order does not: a clean build of everything took
# 423 s against 504 s with make -j2 on the 2-core VM. An existing folder keeps its generator
# (CMAKE_GENERATOR only applies to a new one), and a caller's CMAKE_GENERATOR wins.
if command -v ninja >/dev/null 2>&1; then
  export CMAKE_GENERATOR=${CMAKE_GENERATOR:-Ninja}
fi
