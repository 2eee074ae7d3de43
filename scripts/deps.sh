# Sourced by the scripts: installs the system packages the build needs when they are missing.
# A C/C++ compiler and make for bundled C code; cmake, libcurl and OpenSSL headers for the rdkafka build
# (librdkafka vendored via cmake); python3-venv so scripts/kafka.sh can install the test Kafka broker.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
for pkg in libcurl4-openssl-dev libssl-dev; do
  case "$(dpkg -s "$pkg" 2>/dev/null)" in *"Status: install ok installed"*) ;; *) need+=("$pkg") ;; esac
done
# Debian keeps ensurepip in python3-venv: without it `python3 -m venv --help` works but creating one fails.
{ python3 -m venv --help && python3 -c 'import ensurepip'; } >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
