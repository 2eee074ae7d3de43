# Sourced by the scripts: installs the system packages the build needs when they are missing.
# A C/C++ compiler and make for bundled C code; cmake, libcurl and OpenSSL headers for the rdkafka build
# (librdkafka vendored via cmake); libclang for bindgen (lightgbm3-sys); python3-venv so scripts/kafka.sh
# can install the test Kafka broker and so LightGBM's build gets a cmake >= 3.28 (Debian 12 has 3.25).
# librocksdb-dev (RocksDB 7.8, with its snappy/lz4/zstd libraries) for the RocksDB state backend: the
# rocksdb crate links it through ROCKSDB_LIB_DIR (exported below) instead of compiling RocksDB.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
for pkg in libcurl4-openssl-dev libssl-dev libclang-dev librocksdb-dev libsnappy-dev liblz4-dev libzstd-dev; do
  case "$(dpkg -s "$pkg" 2>/dev/null)" in *"Status: install ok installed"*) ;; *) need+=("$pkg") ;; esac
done
# Debian keeps ensurepip in python3-venv: without it `python3 -m venv --help` works but creating one fails.
{ python3 -m venv --help && python3 -c 'import ensurepip'; } >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
# LightGBM (vendored by lightgbm3-sys) needs cmake >= 3.28: PyPI's cmake in a venv, named by $CMAKE,
# which the cmake crate uses instead of the one on PATH.
cmake_venv="${FSQL_TOOLS_DIR:-$HOME/.cache/fsql-tools}/cmake-venv"
if [ ! -x "$cmake_venv/bin/cmake" ]; then
  echo "== installing cmake 3.31 (PyPI) into $cmake_venv"
  python3 -m venv "$cmake_venv"
  "$cmake_venv/bin/pip" install -q --disable-pip-version-check "cmake==3.31.6"
fi
export CMAKE="$cmake_venv/bin/cmake"
# librocksdb-sys links Debian's RocksDB from here; unset, it would compile its bundled copy (~18 CPU-min).
export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)}"
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
