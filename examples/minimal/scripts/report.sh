#!/bin/sh
# report.sh TOP OUT: a Markdown table of the top words.
set -eu
mkdir -p "$(dirname "$2")"
{
  echo "# Most frequent words"
  echo
  echo "| word | count |"
  echo "|---|---|"
  awk -F '\t' '{ printf "| %s | %d |\n", $1, $2 }' "$1"
} > "$2"
echo "report: wrote $2"
