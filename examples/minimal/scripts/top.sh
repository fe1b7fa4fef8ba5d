#!/bin/sh
# top.sh COUNTS N OUT METRICS: the N most frequent words, and metrics as JSON.
set -eu
mkdir -p "$(dirname "$3")" "$(dirname "$4")"
sort -t "$(printf '\t')" -k2,2nr -k1,1 "$1" | head -n "$2" > "$3"
awk -F '\t' '{ words++; total += $2 } END { printf "{\"distinct_words\": %d, \"total_words\": %d}\n", words, total }' \
  "$1" > "$4"
echo "top: $(head -n 1 "$3" | cut -f1) is the most frequent word"
