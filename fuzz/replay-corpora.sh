#!/bin/bash
# fuzz/replay-corpora.sh: the make check test for the fuzz targets. Runs each replay binary
# (fuzz/replay_<target>, a target linked with fuzz/replay.c) over its seed corpus
# fuzz/corpus/<target>/ and fails when one crashes or cannot read its corpus. Needs
# SOMIRROR_SRCDIR and SOMIRROR_BUILDDIR (set by the test harness).
set -u
srcdir=${SOMIRROR_SRCDIR:?SOMIRROR_SRCDIR is not set}
builddir=${SOMIRROR_BUILDDIR:?SOMIRROR_BUILDDIR is not set}
targets="soap_request rowstream token value default_expr config status_command"

failed=0
for t in $targets; do
    bin=$builddir/fuzz/replay_$t
    corpus=$srcdir/fuzz/corpus/$t
    if [ ! -x "$bin" ]; then
        echo "FAIL $t: $bin is not built"
        failed=1
        continue
    fi
    if [ ! -d "$corpus" ]; then
        echo "FAIL $t: no corpus directory $corpus"
        failed=1
        continue
    fi
    # -v names each input before running it, so the last line names the one that crashed.
    log=$(mktemp "${TMPDIR:-/tmp}/replay-$t.XXXXXX")
    "$bin" -v "$corpus" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "PASS $t: $(tail -n 1 "$log")"
    else
        echo "FAIL $t: exit status $rc; last lines:"
        tail -n 20 "$log" | sed 's/^/    /'
        failed=1
    fi
    rm -f "$log"
done
exit $failed
