#!/usr/bin/env bash
# The CI fuzz smoke: installs cargo-fuzz if missing, seeds the corpora, builds every target once,
# then runs each target for FUZZ_SECONDS. Exits 1 when any target crashes, hangs or runs out of
# memory, after printing the input's path (and, when small, its base64) and the panic with its
# stack; the fix comes with a regression test in the main crate.
#
#   fuzz/smoke.sh [TARGET...]           default: parse_and_decide config_and_rules mbox
#
#   FUZZ_SECONDS=60      fuzzing time per target (libFuzzer -max_total_time)
#   FUZZ_SANITIZER=none  none works on stable Rust as it is. `address` needs nightly flags: on a
#                        stable toolchain this script then sets RUSTC_BOOTSTRAP=1, which makes
#                        stable accept them
#   FUZZ_MAX_LEN=65536   longest input tried, in bytes; bigger seeds are read truncated. Small
#                        inputs run 1.5x (mail) to 4x (mbox) faster than libFuzzer's default
#                        (the largest seed, up to 1 MB); 0 restores that default
#   FUZZ_TIMEOUT=10      seconds one input may take before it counts as a hang
#   FUZZ_RSS_MB=2048     memory limit of a fuzzing process
#   CARGO_FUZZ_VERSION   the cargo-fuzz installed when missing (default 0.13.2)
#
# Time: the first build of the fuzz crate compiles every dependency (about 5 minutes on 2 cores
# without a sanitizer, 10 with ASan); with fuzz/target kept (a CI cache), a build after a change
# to mailsync recompiles only mailsync and the targets (about 2 minutes). Then each target runs
# for FUZZ_SECONDS plus a second of start-up. The script prints each phase's duration.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "${fuzz_dir}")"
cd "${repo_dir}"

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
max_len="${FUZZ_MAX_LEN:-65536}"
per_input_timeout="${FUZZ_TIMEOUT:-10}"
rss_limit_mb="${FUZZ_RSS_MB:-2048}"
cargo_fuzz_version="${CARGO_FUZZ_VERSION:-0.13.2}"
if (($# > 0)); then
  targets=("$@")
else
  targets=(parse_and_decide config_and_rules mbox)
fi

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
# The panic message of a crash comes with its stack.
export RUST_BACKTRACE=1

dict_for() {
  case "$1" in
    parse_and_decide | mbox) echo "${fuzz_dir}/dicts/mail.dict" ;;
    config_and_rules) echo "${fuzz_dir}/dicts/toml.dict" ;;
    *) echo "" ;;
  esac
}

smoke_start=${SECONDS}

echo "== cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  phase_start=${SECONDS}
  cargo install cargo-fuzz --locked --version "${cargo_fuzz_version}"
  echo "cargo-fuzz installed in $((SECONDS - phase_start)) s"
fi
cargo fuzz --version
rustc --version
if [[ "${sanitizer}" != none ]] && ! rustc --version | grep -q -- '-nightly'; then
  # -Zsanitizer is a nightly flag; stable toolchains ship the sanitizer runtimes and accept
  # nightly flags under RUSTC_BOOTSTRAP.
  echo "sanitizer ${sanitizer} on a stable toolchain: setting RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
fi

echo "== seed"
"${fuzz_dir}/seed.sh"

echo "== build (sanitizer: ${sanitizer})"
# cargo fuzz build cannot take --locked; check the lock file first so that CI never fuzzes
# dependency versions that nobody reviewed.
if ! cargo metadata --locked --format-version 1 --manifest-path "${fuzz_dir}/Cargo.toml" \
  >/dev/null; then
  echo "fuzz/Cargo.lock is out of date: run \`cargo update --manifest-path fuzz/Cargo.toml\`" \
    "(or copy Cargo.lock to fuzz/ and build once) and commit it" >&2
  exit 1
fi
phase_start=${SECONDS}
# One build of every target, in a known place. The targets then run straight from there rather
# than through `cargo fuzz run`, which would check the build again before every target: each
# target gets exactly FUZZ_SECONDS, and all of them test the same build even when the source
# changes during the smoke.
cargo fuzz build --sanitizer "${sanitizer}" --target-dir "${fuzz_dir}/target"
build_secs=$((SECONDS - phase_start))
echo "build took ${build_secs} s"
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="${fuzz_dir}/target/${host}/release"
if [[ "${sanitizer}" != none ]]; then
  # As cargo fuzz run sets it: Rust's ASan runtime reports false ODR violations.
  export ASAN_OPTIONS="detect_odr_violation=0${ASAN_OPTIONS:+:${ASAN_OPTIONS}}"
fi

log_dir="${fuzz_dir}/target/smoke"
mkdir -p "${log_dir}"
failed=()
summary=()
fuzz_start=${SECONDS}
for target in "${targets[@]}"; do
  echo "== fuzz ${target} for ${seconds} s"
  log="${log_dir}/${target}.log"
  binary="${bin_dir}/${target}"
  if [[ ! -x "${binary}" ]]; then
    echo "no fuzz target ${target} in ${bin_dir}" >&2
    exit 1
  fi
  mkdir -p "${fuzz_dir}/corpus/${target}" "${fuzz_dir}/artifacts/${target}"
  args=(
    "-artifact_prefix=${fuzz_dir}/artifacts/${target}/"
    "-max_total_time=${seconds}"
    "-max_len=${max_len}"
    "-timeout=${per_input_timeout}"
    "-rss_limit_mb=${rss_limit_mb}"
    "-print_final_stats=1"
  )
  dict="$(dict_for "${target}")"
  if [[ -n "${dict}" && -f "${dict}" ]]; then
    args+=("-dict=${dict}")
  fi
  phase_start=${SECONDS}
  status=0
  "${binary}" "${args[@]}" "${fuzz_dir}/corpus/${target}" >"${log}" 2>&1 || status=$?
  took=$((SECONDS - phase_start))

  runs="$(grep -a '^stat::number_of_executed_units:' "${log}" | awk '{print $2}' | tail -n 1 || true)"
  rate="$(grep -a '^stat::average_exec_per_sec:' "${log}" | awk '{print $2}' | tail -n 1 || true)"
  rss="$(grep -a '^stat::peak_rss_mb:' "${log}" | awk '{print $2}' | tail -n 1 || true)"
  corpus_size="$(find "${fuzz_dir}/corpus/${target}" -type f | wc -l)"
  line="${target}: ${took} s, ${runs:-?} runs, ${rate:-?} exec/s, peak ${rss:-?} MB, corpus ${corpus_size}"

  if ((status == 0)); then
    echo "ok ${line}"
    summary+=("ok     ${line}")
    continue
  fi
  failed+=("${target}")
  summary+=("FAILED ${line}")
  echo "FAILED ${line} (exit ${status}); log: ${log}"
  echo "--- last lines of the log"
  tail -n 80 "${log}"
  echo "---"
  # libFuzzer names the input it saved: "Test unit written to <path>".
  artifacts="$(grep -aoE 'Test unit written to [^[:space:]]+' "${log}" | awk '{print $NF}' || true)"
  if [[ -z "${artifacts}" ]]; then
    echo "no artifact was written (the target failed before fuzzing: see the log)"
  fi
  for artifact in ${artifacts}; do
    echo "artifact: ${artifact}"
    if [[ -f "${artifact}" ]] && (($(stat -c %s "${artifact}") <= 65536)); then
      echo "artifact (base64): $(base64 -w 0 "${artifact}")"
    fi
    echo "reproduce: ${binary} ${artifact}"
    echo "       or: cargo fuzz run --sanitizer ${sanitizer} ${target} ${artifact}"
  done
done

echo "== summary"
printf '%s\n' "${summary[@]}"
echo "build ${build_secs} s, fuzzing $((SECONDS - fuzz_start)) s, smoke $((SECONDS - smoke_start)) s in all"
if ((${#failed[@]} > 0)); then
  echo "fuzzing found a problem in: ${failed[*]}" >&2
  exit 1
fi
