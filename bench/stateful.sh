#!/bin/sh
# The brokers' stateful contract test (tests/process/test_broker_states.py) for a long while: rounds
# of GQ_STATEFUL_EXAMPLES examples per broker (default 500), each round with a seed of its
# own, until SECONDS have passed (default 3600). Stops at the first round that fails, whose
# output ends with the shrunk failing sequence of each failure found (GQ_STATEFUL_ALL_BUGS=1).
#
#   bench/stateful.sh [SECONDS [BROKER...]]     brokers: memory journal redis (default: all)
#   GQ_STATEFUL_WITHOUT=counts,replay bench/stateful.sh 600 redis    leave known failures out
#
# Run it from any directory with the Python that has gq and its test extra (PYTHON, default
# python); redis needs a redis-server (installed as the tests do, else that broker is skipped).
set -u
cd "$(dirname "$0")/.."
seconds=${1:-3600}
[ $# -gt 0 ] && shift
filter=$(echo "${*:-memory journal redis}" | sed 's/ / or /g')
python=${PYTHON:-python}
export GQ_STATEFUL_EXAMPLES="${GQ_STATEFUL_EXAMPLES:-500}" GQ_STATEFUL_ALL_BUGS="${GQ_STATEFUL_ALL_BUGS:-1}"
end=$(( $(date +%s) + seconds ))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "stateful: round $round, seed $seed, $GQ_STATEFUL_EXAMPLES examples per broker ($filter)"
    if ! "$python" -m pytest tests/process/test_broker_states.py -q -s -p no:cacheprovider \
            -k "$filter" --hypothesis-seed="$seed"; then
        echo "stateful: round $round failed (seed $seed)"
        exit 1
    fi
done
echo "stateful: $round round(s) in ${seconds}s, no failure"
