# Shared settings for the project's scripts (sourced, not run).
# Cargo builds go to a target directory outside the clone so that repeated
# runs (and CI on the same machine) reuse the heavy burn build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/webpeft/target}"
export WEBPEFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The cargo profile of the native build: `release` for the CLI and the benchmarks;
# the test scripts choose `ci` (Cargo.toml: the same, with the dependencies outside
# the CPU backend's hot loops at opt-level 1, so a cold `npm test` builds faster).
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-release}"
export WEBPEFT_BIN="$CARGO_TARGET_DIR/$WEBPEFT_PROFILE/webpeft"
# Two cores: one job per core; more only thrashes memory during burn's build.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"  # wgpu/Vulkan warn without it
