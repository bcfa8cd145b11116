#!/usr/bin/env bash
# Generate and install tf2_msgs (TFMessage) into a venv that has ROS 2 from PyPI wheels.
# Usage: tools/build_tf2_msgs.sh VENV_DIR
# Needed because tf2_msgs is not on PyPI (../shared/ENVIRONMENT.md); a ROS 2 distro ships it.
set -euo pipefail
venv=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"

# The wheels' CMake export files name include dirs of the machine that built them; point them
# at this interpreter's headers and numpy's, or CMake refuses them as non-existent paths.
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
for f in $(grep -rl "/opt/python/cp311-cp311" "$venv"/share/*/cmake/ 2>/dev/null || true); do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
done

build="$here/tf2_msgs/build"
rm -rf "$build"
mkdir -p "$build"
cd "$build"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
export PATH="$venv/bin:$PATH"
cmake .. -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release > cmake.log 2>&1 || { tail -30 cmake.log; exit 1; }
make -j2 install > make.log 2>&1 || { tail -30 make.log; exit 1; }
rm -rf "$build"
