#!/usr/bin/env bash
# npm run test:cgroup2: runs the cgroup integration tests on a pure cgroup v2
# kernel. This host (and CI) has cgroup v1 controllers, so the tests boot
# Debian's cloud kernel under qemu (TCG: no KVM here) with an initramfs that
# carries busybox, node, openssl, the built project and its node_modules, and
# an init that mounts ONLY cgroup2 at /sys/fs/cgroup. Exits with the tests'
# status; fails loudly when the VM never reports one.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

# Files run inside the VM: the ones that drive real cgroups, through the
# server or job-init alone, and the ones that tell the two drivers apart.
TESTS=(
  dist/test/supervisor/server.test.js dist/test/supervisor/shutdown.test.js dist/test/supervisor/delegation.test.js
  dist/test/supervisor/policy/isolation.test.js dist/test/supervisor/ops/metrics.test.js dist/test/supervisor/jobs/supervision.test.js
  dist/test/native-init/job-init.test.js dist/test/workers/cgroup-select.test.js dist/test/workers/delegation.test.js
  dist/test/supervisor/quotas.test.js
  dist/test/supervisor/dependencies.test.js dist/test/supervisor/schedules.test.js
)
VM_TIMEOUT=${VM_TIMEOUT:-2400}
# VM_MATCH='*usage*' runs only the tests whose titles match (ava --match), for work on one test.
VM_MATCH=${VM_MATCH:-}
# Kernel log level on the console; VM_LOGLEVEL=7 shows the stacks of a soft lockup or RCU stall.
VM_LOGLEVEL=${VM_LOGLEVEL:-4}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
compgen -G '/boot/vmlinuz-*-cloud-amd64' >/dev/null || need+=(linux-image-cloud-amd64)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -d dist ] && [ -x build/job-init ] && [ -f build/spawn.node ] || npm run build

kernel=$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)
version=${kernel#/boot/vmlinuz-}
work=$(mktemp -d /tmp/jobworker-cgroup2.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,var/tmp,etc,root,app/build,app/test,modules,usr/lib/ssl}
chmod 1777 "$root/tmp" "$root/var/tmp"

copy_with_libs() { # a binary and every library ldd names, at the same paths
  install -D "$1" "$root$1"
  for lib in $(ldd "$1" | grep -o '/[^ ]*'); do install -D "$(readlink -f "$lib")" "$root$lib"; done
}
cp /bin/busybox "$root/bin/busybox"
copy_with_libs "$(readlink -f /usr/bin/node)"
[ -e "$root/usr/bin/node" ] || ln -s "$(readlink -f /usr/bin/node)" "$root/usr/bin/node"
copy_with_libs /usr/bin/openssl
cp /usr/lib/ssl/openssl.cnf "$root/usr/lib/ssl/" 2>/dev/null || true
cp test/cgroup2/init "$root/init"
chmod +x "$root/init"
# proto/: reflection describes the API from the .proto files at run time.
cp -a dist package.json bin proto "$root/app/"
cp build/job-init build/spawn.node "$root/app/build/"
# Stand-ins some tests run in job-init's place.
cp -a test/fixtures "$root/app/test/"
# node_modules without what only builds need (buf alone is ~90 MB; better-sqlite3's sources and
# objects ~25 MB: the tests load its compiled addon alone).
tar -C "$repo" --exclude='node_modules/@bufbuild/buf*' --exclude='node_modules/typescript' \
  --exclude='node_modules/@esbuild' --exclude='node_modules/better-sqlite3/deps' --exclude='node_modules/better-sqlite3/build/deps' \
  --exclude='node_modules/better-sqlite3/build/Release/obj*' --exclude='node_modules/better-sqlite3/build/Release/.deps' \
  --exclude='node_modules/better-sqlite3/build/Release/test_extension.node' --exclude='node_modules/better-sqlite3/build/Release/*.a' \
  -cf - node_modules | tar -C "$root/app" -xf -
# virtio-blk is a module in the cloud kernel: a disk gives io.max a device to limit.
for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_legacy_dev virtio/virtio_pci_modern_dev virtio/virtio_pci block/virtio_blk; do
  cp "/lib/modules/$version/kernel/drivers/$m.ko" "$root/modules/" 2>/dev/null || true
done
# Jobs run as nobody by default; the isolation tests look users up by name.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo '127.0.0.1 localhost' >"$root/etc/hosts"
printf '%s\n' "${TESTS[@]}" >"$root/app/cgroup2-tests"
printf '%s' "$VM_MATCH" >"$root/app/cgroup2-match"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initramfs.gz")

# One boot: runs the tests and powers off, or is stopped by the timeout or
# when the guest kernel reports a soft lockup (under TCG, now and then, a
# guest CPU stops making progress: the run would only wait for the timeout).
boot() {
  local log=$1
  : >"$log"
  timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg,thread=single -m 3072 -smp 2 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$work/initramfs.gz" \
    -drive "file=$work/disk.img,format=raw,if=virtio" \
    -append "console=ttyS0 loglevel=$VM_LOGLEVEL panic=-1" </dev/null >"$log" 2>&1 &
  local vm=$!
  tail -n +1 -f --pid="$vm" "$log" &
  while kill -0 "$vm" 2>/dev/null; do
    if grep -q 'BUG: soft lockup' "$log"; then
      echo "test:cgroup2: the guest kernel reports a soft lockup; stopping this boot" >&2
      kill "$vm" 2>/dev/null || true
      break
    fi
    sleep 5
  done
  wait "$vm" || true
  wait || true
}

echo "test:cgroup2: booting $(basename "$kernel") (initramfs $(du -h "$work/initramfs.gz" | cut -f1)) to run ${TESTS[*]}"
result=
for attempt in 1 2; do
  truncate -s 0 "$work/disk.img" && truncate -s 64M "$work/disk.img"
  boot "$work/console.log"
  result=$(grep -o '^CGROUP2_RESULT exit=[0-9]*' "$work/console.log" | tail -1 || true)
  # Only an emulator hang earns a second boot; a test failure or a timeout does not.
  if [ -n "$result" ] || ! grep -q 'BUG: soft lockup' "$work/console.log"; then break; fi
  echo "test:cgroup2: booting again (attempt 2 of 2) after the soft lockup" >&2
done
if [ -z "$result" ]; then
  echo "test:cgroup2: FAILED: the VM never reported a result (timeout ${VM_TIMEOUT}s, a soft lockup or a crash; console above)" >&2
  exit 1
fi
code=${result##*=}
echo "test:cgroup2: tests exited $code"
exit "$code"
