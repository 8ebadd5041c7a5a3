#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs:
#   parse_and_decide  every mail-looking file of tests/fixtures and of $MAILSYNC_CORPUS
#   mbox              every *.mbox file, and each fixture mail behind a `From ` line
#   config_and_rules  every *.toml of tests/fixtures, rules/ and examples/, and the TOML
#                     examples of README.md and docs/
# Files of 1 MB or more are left out. Seeds are named by their SHA-1, as libFuzzer names the
# inputs it adds, so running this again (or after a fuzz run grew the corpus) adds no
# duplicates and removes nothing.
#
# MAILSYNC_CORPUS=DIR adds a larger corpus of real mail (CI sets it); when it is set, DIR must
# exist. Without it only the repository's files are used. Usage: fuzz/seed.sh (from anywhere).
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "${fuzz_dir}")"
fixtures="${repo_dir}/tests/fixtures"
larger_corpus="${MAILSYNC_CORPUS:-}"
corpus="${fuzz_dir}/corpus"
max_bytes=$((1024 * 1024))

mkdir -p "${corpus}/parse_and_decide" "${corpus}/mbox" "${corpus}/config_and_rules"

# add_seed TARGET FILE: copies FILE into the target's corpus under its SHA-1.
add_seed() {
  local target="$1" file="$2" sum
  sum="$(sha1sum <"${file}")"
  sum="${sum%% *}"
  if [[ ! -e "${corpus}/${target}/${sum}" ]]; then
    cp "${file}" "${corpus}/${target}/${sum}"
  fi
}

# small_enough FILE: true for a regular file under max_bytes.
small_enough() {
  local size
  size="$(stat -c %s "$1")"
  ((size < max_bytes))
}

# looks_like_mail FILE: a mail or mbox by name (.eml, .msg, .mbox); else a name that is not a
# licence, a note or an expected-output file, and a header line (or an mbox `From ` line) near
# the top.
looks_like_mail() {
  local file="$1" name
  name="$(basename "${file}")"
  case "${name}" in
    LICENSE* | LICENCE* | COPYING* | NOTICE* | README* | SOURCE.md | INDEX.tsv | \
      *.md | *.json | *.xml | *.out | *.tsv | *.csv | *.php | *.toml | *.sqlite* | \
      *.png | *.jpg | *.jpeg | *.gif | *.doc | *.pdf | *.zip | *.gz | *_decoded_*)
      return 1
      ;;
    *.eml | *.msg | *.mbox)
      # Mail by name, however malformed its first lines are.
      return 0
      ;;
  esac
  head -c 65536 "${file}" | head -n 100 |
    grep -aqiE '^(From |(from|to|cc|bcc|subject|date|message-id|received|return-path|mime-version|content-type|delivered-to|x-gmail-labels):)'
}

# seed_mail_dir DIR WRAP: mail seeds from DIR; with WRAP=1 each also becomes an mbox seed.
seed_mail_dir() {
  local dir="$1" wrap="$2" file wrapped
  [[ -d "${dir}" ]] || return 0
  while IFS= read -r -d '' file; do
    small_enough "${file}" || continue
    if [[ "${file}" == *.mbox ]]; then
      add_seed mbox "${file}"
    fi
    looks_like_mail "${file}" || continue
    add_seed parse_and_decide "${file}"
    if [[ "${wrap}" == 1 && "${file}" != *.mbox ]]; then
      wrapped="$(mktemp)"
      {
        printf 'From seed@mailsync.invalid Mon Jan  1 00:00:00 2024\n'
        cat "${file}"
      } >"${wrapped}"
      add_seed mbox "${wrapped}"
      rm -f "${wrapped}"
    fi
  done < <(find "${dir}" -type f -print0 | sort -z)
}

seed_mail_dir "${fixtures}" 1
if [[ -n "${larger_corpus}" ]]; then
  if [[ ! -d "${larger_corpus}" ]]; then
    echo "seed: MAILSYNC_CORPUS=${larger_corpus} is not a folder" >&2
    exit 1
  fi
  seed_mail_dir "${larger_corpus}" 0
else
  echo "seed: MAILSYNC_CORPUS is not set; seeding from the repository's files only" >&2
fi

# Config and rules: every TOML file the project ships, and the TOML examples of the docs.
while IFS= read -r -d '' file; do
  small_enough "${file}" && add_seed config_and_rules "${file}"
done < <(find "${fixtures}" "${repo_dir}/rules" "${repo_dir}/examples" -type f -name '*.toml' -print0 2>/dev/null | sort -z)
doc_blocks="$(mktemp -d)"
while IFS= read -r -d '' doc; do
  awk -v out="${doc_blocks}" -v name="$(basename "${doc}" .md)" '
    /^[[:space:]]*```toml[[:space:]]*$/ { n++; inside = 1; next }
    /^[[:space:]]*```/ { inside = 0; next }
    inside { print > (out "/" name "-" n ".toml") }
  ' "${doc}"
done < <(find "${repo_dir}/README.md" "${repo_dir}/docs" -name '*.md' -print0 2>/dev/null | sort -z)
for file in "${doc_blocks}"/*.toml; do
  [[ -e "${file}" ]] && add_seed config_and_rules "${file}"
done
rm -rf "${doc_blocks}"

for target in parse_and_decide mbox config_and_rules; do
  count="$(find "${corpus}/${target}" -type f | wc -l)"
  echo "seed: ${target}: ${count} inputs in fuzz/corpus/${target}"
done
