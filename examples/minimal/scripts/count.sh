#!/bin/sh
# count.sh TEXT OUT: one "word<TAB>count" line per word, lower-cased, sorted by word.
set -eu
mkdir -p "$(dirname "$2")"
tr -cs 'A-Za-z' '\n' < "$1" | tr 'A-Z' 'a-z' | grep -v '^$' | sort | uniq -c \
  | awk '{ printf "%s\t%d\n", $2, $1 }' > "$2"
echo "count: $(wc -l < "$2" | tr -d ' ') distinct words"
