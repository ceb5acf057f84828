# Sourced by scripts/test and scripts/test-sanitizers: `swift_test ARGS...` runs `swift test ARGS...`
# and, when it fails, repeats every failed test and recorded issue at the end of the output, so the
# last lines of a long CI log say what failed.
swift_test() {
    local log status
    log=$(mktemp)
    set +e
    swift test "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "=== swift test failed (exit $status); the failures, again: ==="
        grep -aE "✘|recorded an issue|error: |Fatal error|SUMMARY: .*Sanitizer|ERROR: .*Sanitizer|WARNING: ThreadSanitizer" "$log" \
            | grep -av "^[✔◇↳]" | tail -n 60
    fi
    rm -f "$log"
    return "$status"
}
