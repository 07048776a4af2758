#!/usr/bin/env bash
# fuzz.sh runs every fuzz target in the module, one at a time (go test
# accepts one -fuzz target per invocation), for FUZZTIME each.
#
#   scripts/fuzz.sh                  # every package, 30s per target
#   FUZZTIME=3s scripts/fuzz.sh      # a quick pass
#   scripts/fuzz.sh ./relay/...      # some packages only
#
# FUZZTIME takes what -fuzztime takes: a duration (30s) or a count (1000x).
# It exits non-zero if the targets cannot be listed or any target fails; a
# failing input is saved under the package's testdata/fuzz/<Target>/ and
# replays as a regression test in every later `go test`.
set -uo pipefail

FUZZTIME="${FUZZTIME:-30s}"
cd "$(dirname "$0")/.." || exit 1
[ $# -gt 0 ] || set -- ./...

# go test -list prints each package's matching names, then "ok <pkg> <time>".
if ! listing=$(go test -run '^$' -list '^Fuzz' "$@"); then
	printf '%s\n' "$listing" >&2
	echo "fuzz.sh: cannot list the fuzz targets" >&2
	exit 1
fi

targets=() # "package target"
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	ok*)
		read -r _ pkg _ <<<"$line"
		for name in ${names[@]+"${names[@]}"}; do
			targets+=("$pkg $name")
		done
		names=()
		;;
	esac
done <<<"$listing"

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found"
	exit 0
fi
echo "fuzz.sh: ${#targets[@]} targets, ${FUZZTIME} each"

failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "=== $pkg $name"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: ${#failed[@]} of ${#targets[@]} targets FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets passed"
