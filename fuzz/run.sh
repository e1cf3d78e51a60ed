#!/bin/sh
# Runs every fuzz target for SECONDS seconds (default 60), TARGETS at a time in parallel
# (default 2), from the committed seeds. New inputs go to fuzz/work/<target>/ and crashes to
# fuzz/artifacts/<target>/ (both ignored by git); each log is fuzz/work/<target>.log.
#
#   fuzz/run.sh [SECONDS] [TARGETS] [target ...]
#
# The only toolchain may be stable: cargo fuzz needs nightly flags, hence RUSTC_BOOTSTRAP=1.
# `-s none`: hooklog forbids unsafe code, so the property is "no panic", which needs no
# sanitizer; `-a`: debug assertions, so integer overflow panics too.
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
jobs=${2:-2}
if [ $# -ge 2 ]; then shift 2; else shift $#; fi
targets=${*:-$(RUSTC_BOOTSTRAP=1 cargo fuzz list)}
RUSTC_BOOTSTRAP=1 cargo fuzz build -s none -a
mkdir -p work
printf '%s\n' $targets | xargs -P "$jobs" -I{} sh -c '
  mkdir -p work/{}
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a {} work/{} corpus/{} -- \
    -max_total_time='"$secs"' -print_final_stats=1 >work/{}.log 2>&1
  echo "{}: exit $? $(grep -E "^stat::number_of_executed_units" work/{}.log)"'
