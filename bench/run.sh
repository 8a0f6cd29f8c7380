#!/usr/bin/env bash
# Times strata against its peers, buildah and docker 20.10 with BuildKit, in
# one run over the workloads in shared/bench (see its README.md).
#
#   bench/run.sh [w1 w2 w3 w4]          (default: all four)
#
# Environment:
#   BUILDERS="strata docker buildah"  builders to time (any subset, this order)
#   RUNS=3                             repetitions per mode; the table shows medians
#   STRATA=path                        use this strata binary instead of building one
#   BENCH_DIR=dir                      the workloads (default: ../shared/bench beside the repo)
#   LOOP_SIZE=12G                      size of the sparse ext4 loop file
#   WORKDIR_PARENT=/var/tmp            where the loop file and scratch go
#   BUILDAH_ISOLATION=chroot           buildah --isolation: chroot (default, the faster here) or oci (runc)
#   KEEP_GOING=1                       record a failing build as FAIL and go on (exit 1 at the end)
#
# RUN steps use the host network for every builder: strata's default, and
# dockerd runs with --bridge=none so BuildKit's default bridge is missing.
#
# Runs as root. Everything the builders keep (strata --root, buildah
# --root/--runroot, dockerd --data-root, the registries, the contexts) lives
# on a journaled ext4 made on a loop file, so many-file workloads do not hit
# the journal-less root fs slowdown; it is all unmounted and removed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO/../shared/bench}
RUNS=${RUNS:-3}
BUILDERS=${BUILDERS:-strata docker buildah}
LOOP_SIZE=${LOOP_SIZE:-12G}
WORKDIR_PARENT=${WORKDIR_PARENT:-/var/tmp}
BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
KEEP_GOING=${KEEP_GOING:-0}
# Debian's docker.io client; /usr/local/bin may hold a different docker.
DOCKER_BIN=/usr/bin/docker
DOCKER_SOCK=/run/bench-docker.sock
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '\nbench: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments
ALL_WORKLOADS=(w1 w2 w3 w4)
if [ $# -eq 0 ]; then WORKLOADS=("${ALL_WORKLOADS[@]}"); else WORKLOADS=("$@"); fi
for w in "${WORKLOADS[@]}"; do
  case $w in w1 | w2 | w3 | w4) ;; *) die "unknown workload '$w' (want w1 w2 w3 w4)" ;; esac
done
read -r -a SEL <<<"$BUILDERS"
[ ${#SEL[@]} -gt 0 ] || die "BUILDERS is empty"
for b in "${SEL[@]}"; do
  case $b in strata | docker | buildah) ;; *) die "unknown builder '$b' (want strata docker buildah)" ;; esac
done
# Fixed column order whatever order BUILDERS was given in.
ORDERED=()
for b in strata docker buildah; do
  for s in "${SEL[@]}"; do [ "$s" = "$b" ] && ORDERED+=("$b") && break; done
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$RUNS'"
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, overlayfs, loop mounts, dockerd)"
[ -d "$BENCH_DIR/w1" ] || die "workloads not found at $BENCH_DIR (set BENCH_DIR)"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
has() { local b; for b in "${ORDERED[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }

# The one file each workload's change mode edits (shared/bench/README.md).
change_file() {
  case $1 in
    w1) echo files/f15.txt ;;
    w2) echo seed-a.txt ;;
    w3) echo src/d100/f050.txt ;;
    w4) echo stamp.txt ;;
  esac
}

# ---------------------------------------------------------------- packages
install_missing() {
  local pkgs=()
  command -v docker-registry >/dev/null || pkgs+=(docker-registry)
  dpkg -s busybox-static >/dev/null 2>&1 || pkgs+=(busybox-static)
  command -v skopeo >/dev/null || pkgs+=(skopeo)
  [ -x /usr/bin/time ] || pkgs+=(time)
  command -v mkfs.ext4 >/dev/null || pkgs+=(e2fsprogs)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v python3 >/dev/null || pkgs+=(python3)
  if has buildah; then
    command -v buildah >/dev/null || pkgs+=(buildah)
    command -v runc >/dev/null || pkgs+=(runc)
  fi
  if has docker; then
    { [ -x "$DOCKER_BIN" ] && command -v dockerd >/dev/null; } || pkgs+=(docker.io)
    command -v runc >/dev/null || pkgs+=(runc)
  fi
  [ ${#pkgs[@]} -gt 0 ] || return 0
  log "installing: ${pkgs[*]}"
  # Keep docker.io's postinst from starting a system dockerd of its own.
  local policy_made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_made=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >&2 || rc=$?
  if [ $policy_made -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ $rc -eq 0 ] || die "apt-get install ${pkgs[*]} failed"
}
install_missing

# ---------------------------------------------------------------- strata binary
if [ -n "${STRATA:-}" ]; then
  [ -x "$STRATA" ] || die "STRATA=$STRATA is not an executable"
  STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
  STRATA_GIVEN=1
else
  command -v go >/dev/null || die "go not found (install Go or pass STRATA=path)"
  log "building strata"
  (cd "$REPO" && go build -o bench/.bin/strata ./cmd/strata) || die "go build ./cmd/strata failed (see above)"
  STRATA=$REPO/bench/.bin/strata
fi
STRATA_COMMIT=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  STRATA_COMMIT="$STRATA_COMMIT (work tree has uncommitted changes)"
fi
if [ "${STRATA_GIVEN:-0}" = 1 ]; then
  STRATA_COMMIT="$STRATA_COMMIT of the repo; the binary was passed as STRATA and may be from elsewhere"
fi

# ---------------------------------------------------------------- scratch fs and cleanup
WORK=$(mktemp -d "$WORKDIR_PARENT/strata-bench.XXXXXX")
MNT=$WORK/mnt
LOOP_MOUNTED=0
PIDS_TO_STOP=() # registries and dockerd, stopped in reverse order
DOCKERD_PID=
DOCKER_EXEC_ROOT=/run/bench-docker.$$

stop_pid() { # PID: TERM, wait up to 30 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Unmounts everything at or below $1, deepest first.
umount_tree() {
  local top=$1 m
  local mounts
  mounts=$(awk -v t="$top" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  for m in $mounts; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local i
  for ((i = ${#PIDS_TO_STOP[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS_TO_STOP[$i]}"; done
  rm -rf "$DOCKER_EXEC_ROOT" "$DOCKER_EXEC_ROOT.pid"
  # Keep every builder's output of this run for a look afterwards.
  if [ -n "${LOGS:-}" ] && [ -d "$LOGS" ]; then
    rm -rf "$HERE/results/logs" && mkdir -p "$HERE/results" && cp -r "$LOGS" "$HERE/results/logs"
  fi
  if [ -n "$DOCKERD_PID" ]; then rm -f "$DOCKER_SOCK"; fi
  if [ -d "$MNT" ]; then umount_tree "$MNT"; fi
  if [ $LOOP_MOUNTED -eq 1 ] && mountpoint -q "$MNT"; then
    echo "bench: WARNING: could not unmount $MNT; leaving $WORK in place" >&2
  else
    local dev
    for dev in $(losetup -j "$WORK/ext4.img" -O NAME -n 2>/dev/null); do losetup -d "$dev" 2>/dev/null; done
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$MNT"
FS_NOTE=
log "making a ${LOOP_SIZE} journaled ext4 on a loop file in $WORK"
# Inode tables and journal are written now, not by ext4lazyinit in the
# background during the timed runs.
if truncate -s "$LOOP_SIZE" "$WORK/ext4.img" && mkfs.ext4 -q -F -O has_journal -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/ext4.img" &&
  mount -o loop "$WORK/ext4.img" "$MNT"; then
  LOOP_MOUNTED=1
  FS=$MNT
  FS_NOTE="ext4 with a journal on a ${LOOP_SIZE} sparse loop file ($(findmnt -n -o SOURCE --target "$MNT"), options $(findmnt -n -o OPTIONS --target "$MNT"))"
else
  rm -f "$WORK/ext4.img"
  FS=$WORK/fs
  mkdir -p "$FS"
  FS_NOTE="FALLBACK: the loop mount failed, so a directory on the root filesystem ($(findmnt -n -o FSTYPE,SOURCE --target "$WORK" | tr -s ' ')); many-file figures (w3) may be unstable there"
  log "WARNING: $FS_NOTE"
fi
mkdir -p "$FS/logs" "$FS/ctx"
LOGS=$FS/logs
RAW=$WORK/raw.tsv # workload builder mode run seconds rss_kb
: >"$RAW"

# ---------------------------------------------------------------- registries
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

declare -A REG_PID REG_PORT
start_registry() { # NAME [PORT]
  local name=$1 port=${2:-$(free_port)} dir=$FS/registry/$1 i
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$dir/config.yml" >>"$LOGS/registry-$name.log" 2>&1 &
  REG_PID[$name]=$!
  REG_PORT[$name]=$port
  PIDS_TO_STOP+=("$!")
  for i in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && return 0
    kill -0 "${REG_PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$LOGS/registry-$name.log" >&2
  die "registry $name did not come up on 127.0.0.1:$port"
}

# The push registry is emptied before every push so each push uploads every
# blob (no cross-repository mounts from an earlier run).
reset_push_registry() {
  stop_pid "${REG_PID[push]}"
  rm -rf "$FS/registry/push/storage"
  start_registry push "${REG_PORT[push]}"
}

start_registry base
start_registry push
REG=127.0.0.1:${REG_PORT[base]}
PUSHREG=127.0.0.1:${REG_PORT[push]}
BASE=$REG/library/busybox:latest
log "registries: base images at $REG, pushes to $PUSHREG"

# ---------------------------------------------------------------- the base image
log "making the busybox base image with strata import and pushing it as $BASE"
ROOTFS=$FS/busybox-rootfs
mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,tmp,var/tmp}
chmod 1777 "$ROOTFS/tmp" "$ROOTFS/var/tmp"
cp /bin/busybox "$ROOTFS/bin/busybox"
chroot "$ROOTFS" /bin/busybox --install -s
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
"$STRATA" --root "$FS/strata-seed" import -t busybox:latest -c 'CMD ["/bin/sh"]' "$ROOTFS" >"$LOGS/seed.log" 2>&1 ||
  { cat "$LOGS/seed.log" >&2; die "strata import of the busybox rootfs failed"; }
"$STRATA" --root "$FS/strata-seed" push busybox:latest "$BASE" >>"$LOGS/seed.log" 2>&1 ||
  { cat "$LOGS/seed.log" >&2; die "strata push of the base image to $BASE failed"; }
skopeo inspect --tls-verify=false "docker://$BASE" >/dev/null 2>>"$LOGS/seed.log" ||
  { cat "$LOGS/seed.log" >&2; die "the base image $BASE cannot be read back with skopeo"; }

# ---------------------------------------------------------------- dockerd
DOCKER=("$DOCKER_BIN" -H "unix://$DOCKER_SOCK")
export DOCKER_BUILDKIT=1 DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"
# buildah reads DOCKER_CONFIG too and refuses a directory without this file.
echo '{"auths": {}}' >"$DOCKER_CONFIG/config.json"
if has docker; then
  if [ -S "$DOCKER_SOCK" ]; then
    "${DOCKER[@]}" version >/dev/null 2>&1 && die "a dockerd already answers on $DOCKER_SOCK; stop it first"
    rm -f "$DOCKER_SOCK"
  fi
  log "starting dockerd (data root on the bench fs)"
  mkdir -p "$FS/docker"
  dockerd --host "unix://$DOCKER_SOCK" --data-root "$FS/docker" \
    --exec-root "$DOCKER_EXEC_ROOT" --pidfile "$DOCKER_EXEC_ROOT.pid" \
    --storage-driver overlay2 --insecure-registry "$REG" --insecure-registry "$PUSHREG" \
    --bridge=none --iptables=false >"$LOGS/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  PIDS_TO_STOP+=("$DOCKERD_PID")
  ok=0
  for i in $(seq 600); do
    if "${DOCKER[@]}" info >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ $ok -eq 1 ] || { tail -30 "$LOGS/dockerd.log" >&2; die "dockerd did not become ready"; }
fi

# ---------------------------------------------------------------- buildah
BUILDAH=(buildah --root "$FS/buildah/root" --runroot "$FS/buildah/runroot" --storage-driver overlay)

# ---------------------------------------------------------------- per-builder actions
img_ref() { echo "bench/$1:latest"; } # local name of a workload's image

build_cmd() { # BUILDER WORKLOAD CTX -> sets CMD
  local b=$1 w=$2 ctx=$3
  case $b in
    strata) CMD=("$STRATA" --root "$FS/strata" build --progress=plain -t "$(img_ref "$w")"
      --build-arg "BASE=$BASE" -f "$ctx/Dockerfile" "$ctx") ;;
    docker) CMD=("${DOCKER[@]}" build --progress=plain --network host -t "$(img_ref "$w")"
      --build-arg "BASE=$BASE" -f "$ctx/Dockerfile" "$ctx") ;;
    buildah) CMD=("${BUILDAH[@]}" build --layers --isolation "$BUILDAH_ISOLATION" --network host --tls-verify=false
      -t "localhost/$(img_ref "$w")" --build-arg "BASE=$BASE" -f "$ctx/Dockerfile" "$ctx") ;;
  esac
}

push_cmd() { # BUILDER WORKLOAD DEST -> sets CMD
  local b=$1 w=$2 dest=$3
  case $b in
    strata) CMD=("$STRATA" --root "$FS/strata" push "$(img_ref "$w")" "$dest") ;;
    docker) CMD=("${DOCKER[@]}" push "$dest") ;;
    buildah) CMD=("${BUILDAH[@]}" push --tls-verify=false "localhost/$(img_ref "$w")" "docker://$dest") ;;
  esac
}

# Fails unless the builder's local store has the workload's image.
check_image() { # BUILDER WORKLOAD
  local b=$1 w=$2
  case $b in
    strata) "$STRATA" --root "$FS/strata" images 2>/dev/null | grep -q "bench/$w" ;;
    docker) "${DOCKER[@]}" image inspect "$(img_ref "$w")" >/dev/null 2>&1 ;;
    buildah) "${BUILDAH[@]}" inspect --type image "localhost/$(img_ref "$w")" >/dev/null 2>&1 ;;
  esac
}

# Removes every cache and image the builder has (cold mode); the page cache stays.
reset_builder() { # BUILDER
  local b=$1 out
  case $b in
    strata)
      if awk -v t="$FS/strata" 'index($5, t "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        die "strata left mounts under its root after a build: $(awk -v t="$FS/strata" 'index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo | head -3 | tr '\n' ' ')"
      fi
      rm -rf "$FS/strata" && mkdir -p "$FS/strata"
      ;;
    docker)
      local ids=()
      mapfile -t ids < <("${DOCKER[@]}" image ls -aq | sort -u)
      [ ${#ids[@]} -eq 0 ] || "${DOCKER[@]}" image rm -f "${ids[@]}" >/dev/null
      "${DOCKER[@]}" builder prune -af >/dev/null
      "${DOCKER[@]}" system prune -af >/dev/null
      out=$("${DOCKER[@]}" image ls -aq)
      [ -z "$out" ] || die "docker still has images after the reset: $out"
      ;;
    buildah)
      "${BUILDAH[@]}" rm --all >/dev/null
      out=$("${BUILDAH[@]}" images -aq)
      [ -z "$out" ] || "${BUILDAH[@]}" rmi --all -f >/dev/null
      out=$("${BUILDAH[@]}" images -aq)
      [ -z "$out" ] || die "buildah still has images after the reset: $out"
      ;;
  esac
}

FAILED=()
# Runs CMD once, timed; appends a row to $RAW. Returns 1 on failure (after
# dying unless KEEP_GOING=1).
timed() { # WORKLOAD BUILDER MODE RUN
  local w=$1 b=$2 mode=$3 run=$4
  local logf=$LOGS/$w-$b-$mode-$run.log rssf=$WORK/rss rc=0 t0 t1 secs rss
  sync
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$rssf" "${CMD[@]}" >"$logf" 2>&1 || rc=$?
  t1=$(date +%s%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  rss=$(tail -1 "$rssf")
  if [ $rc -ne 0 ]; then
    {
      echo
      echo "bench: $b $mode of $w (run $run) FAILED with exit status $rc after ${secs}s."
      echo "command: ${CMD[*]}"
      echo "last 40 lines of its output (all of it will be in bench/results/logs/$(basename "$logf")):"
      tail -40 "$logf" | sed 's/^/  | /'
    } >&2
    FAILED+=("$w $b $mode: exit $rc: $(grep -m1 -iE 'error|fail' "$logf" | cut -c1-300)")
    if [ "$KEEP_GOING" != 1 ]; then
      echo "bench: stopping (KEEP_GOING=1 would go on); bench/results/latest.md is not updated." >&2
      exit 1
    fi
    printf '%s\t%s\t%s\t%s\tFAIL\t\n' "$w" "$b" "$mode" "$run" >>"$RAW"
    return 1
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$b" "$mode" "$run" "$secs" "$rss" >>"$RAW"
  log "$w $b $mode $run/$RUNS: ${secs}s, client peak RSS $((rss / 1024)) MB"
}

prepare_context() { # WORKLOAD -> context dir on the bench fs
  local w=$1 ctx=$FS/ctx/$1
  if [ ! -d "$ctx" ]; then
    if [ "$w" = w3 ]; then
      log "generating the w3 context"
      bash "$BENCH_DIR/w3/gen-context.sh" "$ctx" >"$LOGS/gen-w3.log" 2>&1 ||
        { cat "$LOGS/gen-w3.log" >&2; die "w3/gen-context.sh failed"; }
    else
      cp -a "$BENCH_DIR/$w" "$ctx"
    fi
  fi
  echo "$ctx"
}

# Runs every mode of one workload for one builder.
bench_one() { # WORKLOAD BUILDER
  local w=$1 b=$2 ctx cf run dest
  ctx=$(prepare_context "$w")
  cf=$ctx/$(change_file "$w")
  [ -f "$cf" ] || die "$w: the change file $cf is missing"
  cp -p "$cf" "$WORK/orig-change-file"
  build_cmd "$b" "$w" "$ctx"

  for run in $(seq "$RUNS"); do
    reset_builder "$b"
    timed "$w" "$b" cold "$run" || return 0
    check_image "$b" "$w" || die "$b reported success for $w but has no image $(img_ref "$w")"
  done
  for run in $(seq "$RUNS"); do
    timed "$w" "$b" warm "$run" || return 0
  done
  for run in $(seq "$RUNS"); do
    printf 'bench change: %s run %s at %s\n' "$b" "$run" "$(date +%s%N)" >>"$cf"
    timed "$w" "$b" change "$run" || { cp -p "$WORK/orig-change-file" "$cf"; return 0; }
    cp -p "$WORK/orig-change-file" "$cf"
  done
  if [ "$w" = w4 ]; then
    check_image "$b" "$w" || die "$b has no image $(img_ref "$w") to push"
    for run in $(seq "$RUNS"); do
      reset_push_registry
      dest=$PUSHREG/bench/w4-$b-$run:latest
      if [ "$b" = docker ]; then "${DOCKER[@]}" tag "$(img_ref "$w")" "$dest"; fi
      push_cmd "$b" "$w" "$dest"
      timed "$w" "$b" push "$run" || return 0
      skopeo inspect --tls-verify=false "docker://$dest" >/dev/null 2>"$LOGS/verify-push.log" ||
        { cat "$LOGS/verify-push.log" >&2; die "$b push reported success but $dest cannot be read back"; }
      if [ "$b" = docker ]; then "${DOCKER[@]}" image rm "$dest" >/dev/null; fi
    done
  fi
  # Free the space before the next builder; its own cold runs reset it anyway.
  reset_builder "$b"
}

# ---------------------------------------------------------------- machine facts
ver() { "$@" 2>/dev/null | head -1 || echo "not available"; }
FACTS=$(
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- CPUs (nproc): $(nproc); model: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "- kernel: $(uname -r)"
  echo "- load average when the timed runs began: $(cut -d' ' -f1-3 /proc/loadavg) (anything else using the CPUs skews every figure)"
  echo "- filesystem for all builder state and contexts: $FS_NOTE"
  echo "- strata: commit $STRATA_COMMIT ($STRATA)"
  if has docker; then echo "- docker: client $("$DOCKER_BIN" --version), server $("${DOCKER[@]}" version --format '{{.Server.Version}}' 2>/dev/null), BuildKit, storage driver overlay2"; fi
  if has buildah; then echo "- buildah: $(ver buildah --version), isolation $BUILDAH_ISOLATION, storage driver overlay, --layers"; fi
  echo "- registry: $(ver docker-registry --version) on 127.0.0.1 (base image $BASE; pushes go to a second, emptied-before-each-push registry)"
  echo "- runs per mode: $RUNS (figures are medians of wall seconds)"
)

# ---------------------------------------------------------------- warm-up
# One untimed tiny build per builder first, so no timed run pays for a
# daemon's first build or for binaries not yet in the page cache.
WARMUP_CTX=$FS/ctx/warmup
mkdir -p "$WARMUP_CTX"
# shellcheck disable=SC2016 # ${BASE} is for the Dockerfile, not this shell
printf 'ARG BASE=busybox\nFROM ${BASE}\nCOPY f /f\nRUN cat /f\n' >"$WARMUP_CTX/Dockerfile"
echo warm-up >"$WARMUP_CTX/f"
for b in "${ORDERED[@]}"; do
  log "warm-up build with $b"
  build_cmd "$b" warmup "$WARMUP_CTX"
  "${CMD[@]}" >"$LOGS/warmup-$b.log" 2>&1 ||
    { tail -40 "$LOGS/warmup-$b.log" >&2; die "the warm-up build with $b failed (a tiny COPY + RUN; see above)"; }
  reset_builder "$b"
done

# ---------------------------------------------------------------- run
for w in "${WORKLOADS[@]}"; do
  for b in "${ORDERED[@]}"; do
    log "=== $w with $b"
    bench_one "$w" "$b"
  done
done

# ---------------------------------------------------------------- report
median() { # WORKLOAD BUILDER MODE -> median seconds, "FAIL", or ""
  local rows
  rows=$(awk -F'\t' -v w="$1" -v b="$2" -v m="$3" '$1 == w && $2 == b && $3 == m { print $5 }' "$RAW")
  [ -n "$rows" ] || return 0
  if grep -q FAIL <<<"$rows"; then echo FAIL; return 0; fi
  sort -g <<<"$rows" | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
peak_rss_mb() { # WORKLOAD BUILDER MODE -> max peak RSS in MB over the runs
  awk -F'\t' -v w="$1" -v b="$2" -v m="$3" '
    $1 == w && $2 == b && $3 == m && $6 != "" { if ($6 > max) max = $6; n++ }
    END { if (n) printf "%d", max / 1024 }' "$RAW"
}

PEERS=()
for b in docker buildah; do has "$b" && PEERS+=("$b"); done

REPORT=$(
  echo "# strata benchmark"
  echo
  echo "$FACTS"
  echo
  echo "Modes as in shared/bench/README.md: cold (that builder's caches and images removed first, page cache warm), warm (no change), change (one file changed), push (w4 only, to an empty registry)."
  echo "RUN steps use the host network with every builder (strata's default; dockerd runs with --bridge=none)."
  echo "Seconds are wall-clock medians of $RUNS run(s). Ratio = strata / fastest peer in this run (below 1 means strata is faster)."
  echo "Peak RSS is that of the client process (GNU time %M, the largest process in its tree). For strata and buildah it is the whole build;"
  echo "docker's client only sends the context (the work happens in dockerd), so its figure is not shown."
  for w in "${WORKLOADS[@]}"; do
    echo
    echo "## $w"
    echo
    hdr="| mode |"
    sep="|---|"
    for b in "${ORDERED[@]}"; do hdr+=" $b (s) |"; sep+="---:|"; done
    if has strata && [ ${#PEERS[@]} -gt 0 ]; then hdr+=" strata / best peer |"; sep+="---:|"; fi
    if has strata; then hdr+=" strata peak RSS (MB) |"; sep+="---:|"; fi
    if has buildah; then hdr+=" buildah peak RSS (MB) |"; sep+="---:|"; fi
    echo "$hdr"
    echo "$sep"
    modes="cold warm change"
    if [ "$w" = w4 ]; then modes+=" push"; fi
    for m in $modes; do
      row="| $m |"
      for b in "${ORDERED[@]}"; do
        v=$(median "$w" "$b" "$m")
        row+=" ${v:-–} |"
      done
      if has strata && [ ${#PEERS[@]} -gt 0 ]; then
        s=$(median "$w" strata "$m")
        best=
        for p in "${PEERS[@]}"; do
          v=$(median "$w" "$p" "$m")
          [[ $v =~ ^[0-9.]+$ ]] || continue
          if [ -z "$best" ] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$v; fi
        done
        if [[ $s =~ ^[0-9.]+$ ]] && [ -n "$best" ]; then
          row+=" $(awk -v s="$s" -v b="$best" 'BEGIN { if (b > 0) printf "%.2f", s / b; else print "–" }') |"
        else
          row+=" – |"
        fi
      fi
      if has strata; then v=$(peak_rss_mb "$w" strata "$m"); row+=" ${v:-–} |"; fi
      if has buildah; then v=$(peak_rss_mb "$w" buildah "$m"); row+=" ${v:-–} |"; fi
      echo "$row"
    done
  done
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo
    echo "## Failures"
    echo
    for f in "${FAILED[@]}"; do echo "- $f"; done
  fi
  echo
  echo "Every sample: bench/results/latest.tsv (workload, builder, mode, run, seconds, peak RSS KiB); every build's output: bench/results/logs/."
)

mkdir -p "$HERE/results"
printf '%s\n' "$REPORT" >"$HERE/results/latest.md"
{
  printf 'workload\tbuilder\tmode\trun\tseconds\tpeak_rss_kib\n'
  cat "$RAW"
} >"$HERE/results/latest.tsv"
echo
printf '%s\n' "$REPORT"
echo
log "written to bench/results/latest.md and bench/results/latest.tsv"
[ ${#FAILED[@]} -eq 0 ] || exit 1
