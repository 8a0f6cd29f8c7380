#!/usr/bin/env bash
# Demo: build strata, make a busybox base image from Debian's busybox-static,
# start a local registry, build examples/hello and push it there, then read
# the pushed image back. Needs root (namespaces, overlayfs).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /bin/busybox ] || ! /bin/busybox --help 2>&1 | grep -q 'static'; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static
  fi
fi
mkdir -p bin
go build -o bin/strata ./cmd/strata

work=$(mktemp -d /tmp/strata-demo.XXXXXX)
export STRATA_ROOT="$work/root"
port=${DEMO_PORT:-5555}
cleanup() { [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The base image: busybox-static with its applets, like the busybox image.
rootfs="$work/busybox"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,tmp,var/tmp}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
chroot "$rootfs" /bin/busybox --install -s
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
bin/strata import -t busybox:latest -c 'CMD ["/bin/sh"]' "$rootfs"

bin/strata registry serve --addr "127.0.0.1:$port" &
reg_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

bin/strata build --progress=plain -t "127.0.0.1:$port/demo/hello:1" --push examples/hello
echo "--- built again (every step cached):"
bin/strata build --progress=plain -t "127.0.0.1:$port/demo/hello:1" --push examples/hello
echo "--- the pushed manifest:"
if command -v skopeo >/dev/null; then
  skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/demo/hello:1"
else
  bin/strata images
fi
