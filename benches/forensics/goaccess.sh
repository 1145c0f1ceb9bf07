#!/bin/sh
# GoAccess over the benchmark log (BENCHMARKS.md §7): the combined-log fields of the
# `upstream` format, JSON output. Usage: goaccess.sh LOG OUT.json
exec goaccess "$1" --log-format='%h %^[%d:%t %^] "%r" %s %b "%R" "%u" %^' --date-format=%d/%b/%Y --time-format=%T -o "$2" 2>/dev/null
