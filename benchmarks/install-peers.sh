#!/usr/bin/env bash
# Install the peer tools the benchmarks compare against: GNU parallel (Debian packages), and
# for bench_search.py the `search` extra (scikit-learn, Optuna, hyperopt) into the project's
# venv (Optuna is also the peer that benchmark compares against). PYTHON overrides the venv.
set -euo pipefail
if ! command -v parallel >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq parallel >/dev/null
fi
parallel --version | head -1

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if ! "$python" -c "import sklearn, optuna, hyperopt" 2>/dev/null; then
    "$python" -m pip install -q -e "$root[search]"
fi
"$python" -c "import optuna, hyperopt, sklearn; print('optuna', optuna.__version__, \
'hyperopt', hyperopt.__version__, 'scikit-learn', sklearn.__version__)"
