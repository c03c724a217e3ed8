#!/usr/bin/env bash
# Builds an example plugin from source with its pinned toolchain, as the guides in
# docs/plugins/ say, and prints the path of the component it made.
#
#   examples/plugins/build.sh js|js-qjs|python     build one example (prints the .wasm's path)
#   examples/plugins/build.sh --install [LANG...]  only install the toolchains (default: all)
#
# The toolchains are installed into target/plugin-toolchains/<js|python> (never into the
# source tree) from the pins in examples/plugins/js/package-lock.json (`npm ci`) and
# examples/plugins/python/requirements.txt (a venv), and again whenever the pins change.
# Components land in target/examples/, named by a hash of everything that goes into them, so
# an unchanged example is not built twice.
#
# Exit status: 0 built; 1 the build failed; 77 the toolchain is not available here (no
# node/npm or python3, or installing it failed): the tests then fail when CI=true, and skip
# with a message otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/examples/plugins
tools=$root/target/plugin-toolchains
out_dir=$root/target/examples

unavailable() {
    echo "examples/plugins/build.sh: $*" >&2
    exit 77
}

# A hash of the files given (contents and names).
digest() {
    (cd "$root" && sha256sum "$@" | sha256sum | cut -c1-16)
}

install_js() {
    command -v node >/dev/null && command -v npm >/dev/null \
        || unavailable "node and npm are needed for the JavaScript example (Node.js 20 or later)"
    local dir=$tools/js want
    want=$(digest examples/plugins/js/package.json examples/plugins/js/package-lock.json)
    if [[ ! -d $dir/node_modules || "$(cat "$dir/.pins" 2>/dev/null)" != "$want" ]]; then
        echo "installing the JavaScript toolchain into $dir (npm ci)" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        cp "$here/js/package.json" "$here/js/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) \
            || { rm -rf "$dir"; unavailable "npm ci failed (is the npm registry reachable?)"; }
        echo "$want" >"$dir/.pins"
    fi
}

install_python() {
    command -v python3 >/dev/null || unavailable "python3 (with venv) is needed for the Python example"
    local venv=$tools/python/venv want
    want=$(digest examples/plugins/python/requirements.txt)
    if [[ ! -x $venv/bin/componentize-py || "$(cat "$venv/.pins" 2>/dev/null)" != "$want" ]]; then
        echo "installing the Python toolchain into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" || unavailable "python3 -m venv failed (install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/python/requirements.txt" >&2 \
            || { rm -rf "$venv"; unavailable "pip install failed (is PyPI reachable?)"; }
        echo "$want" >"$venv/.pins"
    fi
}

# Runs the documented build command in a scratch copy of the example (so nothing is written
# into the source tree), then moves the component into target/examples/.
scratch=
trap '[[ -z $scratch ]] || rm -rf "$scratch"' EXIT

# One build or install per toolchain at a time (tests build the examples from several threads
# and processes at once): held until the script exits.
lock() {
    mkdir -p "$tools"
    exec 9>"$tools/$1.lock"
    flock 9
}

build() {
    local lang=$1 hash out
    case $lang in
        js | js-qjs)
            lock js
            install_js
            hash=$(digest examples/plugins/js/app.js examples/plugins/js/package-lock.json wit/transformer.wit)
            ;;
        python)
            lock python
            install_python
            hash=$(digest examples/plugins/python/app.py examples/plugins/python/requirements.txt wit/transformer.wit)
            ;;
        *)
            echo "unknown example $lang (js, js-qjs, python)" >&2
            exit 1
            ;;
    esac
    out=$out_dir/$lang-$hash.wasm
    if [[ ! -s $out ]]; then
        mkdir -p "$out_dir"
        scratch=$(mktemp -d "$out_dir/.build-$lang-XXXXXX")
        # The same layout as the repository, so the commands' `../../../wit` holds.
        mkdir -p "$scratch/examples/plugins"
        cp -r "$root/wit" "$scratch/wit"
        case $lang in
            js)
                cp -r "$here/js" "$scratch/examples/plugins/js"
                (cd "$scratch/examples/plugins/js" && PATH=$tools/js/node_modules/.bin:$PATH \
                    componentize-js app.js --wit ../../../wit --world-name transformer -o plugin.wasm >&2)
                mv "$scratch/examples/plugins/js/plugin.wasm" "$out"
                ;;
            js-qjs)
                cp -r "$here/js" "$scratch/examples/plugins/js"
                (cd "$scratch/examples/plugins/js" && PATH=$tools/js/node_modules/.bin:$PATH \
                    componentize-qjs --wit ../../../wit --world transformer --js app.js --sync -o plugin-qjs.wasm >&2)
                mv "$scratch/examples/plugins/js/plugin-qjs.wasm" "$out"
                ;;
            python)
                cp -r "$here/python" "$scratch/examples/plugins/python"
                (cd "$scratch/examples/plugins/python" && PATH=$tools/python/venv/bin:$PATH \
                    componentize-py -d ../../../wit -w transformer componentize app -o plugin.wasm >&2)
                mv "$scratch/examples/plugins/python/plugin.wasm" "$out"
                ;;
        esac
        # Older builds of this example are of no more use.
        find "$out_dir" -maxdepth 1 -name "$lang-[0-9a-f]*.wasm" ! -name "$(basename "$out")" -delete
    fi
    echo "$out"
}

if [[ ${1:-} == --install ]]; then
    shift
    langs=("$@")
    [[ ${#langs[@]} -gt 0 ]] || langs=(js python)
    for lang in "${langs[@]}"; do
        case $lang in
            js | js-qjs) lock js; install_js ;;
            python) lock python; install_python ;;
            *) echo "unknown example $lang" >&2; exit 1 ;;
        esac
    done
    exit 0
fi
[[ $# -eq 1 ]] || { sed -n '2,16p' "$0" >&2; exit 1; }
build "$1"
