#!/usr/bin/env bash
# Builds target/debian/mailsync_<version>-1_<arch>.deb from a production binary that is already
# built (`cargo build --release --no-default-features`, or the dev profile in CI), with the
# man page and shell completions it prints, the systemd unit pointing at /usr/bin, the example
# config and rules, and the alert rules and dashboard. Usage: packaging/build-deb.sh [release|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
case "$profile" in
  release) binary=target/release/mailsync ;;
  dev) binary=target/debug/mailsync ;;
  *) echo "usage: $0 [release|dev]" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "$binary is not built: cargo build --profile $profile --no-default-features --bin mailsync" >&2; exit 1; }
if grep -q "Choose an account" "$binary"; then
  echo "$binary contains the test server: build it with --no-default-features" >&2; exit 1
fi
out=target/package
mkdir -p "$out"
"$binary" man > "$out/mailsync.1"
"$binary" completions bash > "$out/mailsync.bash"
"$binary" completions zsh > "$out/_mailsync"
"$binary" completions fish > "$out/mailsync.fish"
# The unit ships for /usr/bin, where the package puts the binary.
sed 's#/usr/local/bin/mailsync#/usr/bin/mailsync#g' systemd/mailsync.service > "$out/mailsync.service"
cargo deb --no-build --profile "$profile" --no-strip
