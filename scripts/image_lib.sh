# shellcheck shell=bash
# Shared by scripts/image.sh and scripts/image_test.sh (sourced, not run).
# Environment: PODMAN_RUNTIME (default runc: crun fails on hosts with cgroups in hybrid mode),
# PODMAN_ULIMITS (default "nofile=1000:1000 nproc=1000:1000": hosts that refuse podman's defaults).

# podman with the runtime every call needs.
pod() {
  podman --runtime "${PODMAN_RUNTIME:-runc}" "$@"
}

# The --ulimit flags for podman build and run.
ulimit_args() {
  local limit
  for limit in ${PODMAN_ULIMITS:-nofile=1000:1000 nproc=1000:1000}; do
    printf -- '--ulimit\n%s\n' "$limit"
  done
}

# The project's version (pyproject.toml): the image tag, as the chart's appVersion.
project_version() {
  python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])'
}
