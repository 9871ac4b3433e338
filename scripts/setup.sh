#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine with rustup,
# Python 3 and Node: the wasm target, a Vulkan driver for `--device gpu`
# (lavapipe runs Vulkan on the CPU where there is no GPU), and the bundled
# models, and what the browser tests need (scripts/setup-web.sh). Safe to run again: each step is skipped when already done.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"

if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# A Vulkan loader and driver. Real GPUs bring their own; lavapipe is the fallback.
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || ! ldconfig -p | grep libvulkan.so.1 >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

bash scripts/fetch-models.sh
# The browser side: Chromium, wasm-bindgen-cli, npm build and test tools.
bash scripts/setup-web.sh
