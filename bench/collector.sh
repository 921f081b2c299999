# bench/collector.sh, sourced by bench/ab.sh and bench/fbcost.sh (with root
# set to the repository): collector_of REV sets bin_path to REV's collector.
# A commit-ish is built once with its own `make build` in a git worktree
# under _build/ab/ and kept as _build/ab/COMMIT/otelcol-tcpconnect (a later
# run with the same commit reuses it); `.` is the working tree (make build).

collector_of() {
	local rev=$1 commit src
	if [[ $rev == . ]]; then
		echo "== working tree: make build" >&2
		make -C "$root" build >&2
		bin_path=$root/_build/otelcol-tcpconnect
		return
	fi
	commit=$(git -C "$root" rev-parse --verify "$rev^{commit}")
	bin_path=$root/_build/ab/$commit/otelcol-tcpconnect
	if [[ -x $bin_path ]]; then
		echo "== $rev ($commit): cached $bin_path" >&2
		return
	fi
	src=$root/_build/ab/src-$commit
	echo "== $rev ($commit): building in $src" >&2
	rm -rf "$src"
	git -C "$root" worktree prune
	git -C "$root" worktree add --detach "$src" "$commit" >&2
	make -C "$src" build >&2
	mkdir -p "$(dirname "$bin_path")"
	cp "$src/_build/otelcol-tcpconnect" "$bin_path"
	git -C "$root" worktree remove --force "$src"
}
