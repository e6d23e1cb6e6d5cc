#!/usr/bin/env bash
# Install what the test node needs from Debian's packages, if missing: containerd and runc (the container
# runtime), the CNI plugins (kubelet is not Ready without a network configuration), iptables and iproute2
# (kubelet and the node harness), debootstrap and umoci (the image build). Needs root and apt.
set -euo pipefail
PKGS=(containerd runc containernetworking-plugins iptables iproute2 debootstrap umoci)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "[install-node-packages] the test node needs root and these Debian packages: ${missing[*]}" >&2
  exit 1
fi
echo "[install-node-packages] apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || {
  apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}
