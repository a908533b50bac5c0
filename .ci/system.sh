#!/usr/bin/env bash
# CI: Debian packages the tests read: Fashion-MNIST for the shipped fashion network's test.
set -euo pipefail
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
